using BuPO.Hybrid.Gguf;
using BuPO.Hybrid.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace BuPO.Hybrid.Model.Tests;

public class DeviceAndErrorTests
{
    private readonly ITestOutputHelper _out;
    public DeviceAndErrorTests(ITestOutputHelper output) => _out = output;

    [Fact]
    public void UnsupportedArchitectureNamesItAndTheFile()
    {
        var dir = Directory.CreateTempSubdirectory("bupo-arch-").FullName;
        try
        {
            var path = Path.Combine(dir, "gpt2-like.gguf");
            using (var vocab = GgufFile.Open(TinyTrainingModels.Vocab))
                GgufWriter.Copy(vocab, path, w => w.SetString("general.architecture", "gpt2"));
            var e = Assert.ThrowsAny<BupoException>(() => TransformerModel.FromGguf(path));
            _out.WriteLine(e.Message);
            Assert.Contains("'gpt2'", e.Message);
            Assert.Contains("gpt2-like.gguf", e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void DeviceAndTypeStringsParse()
    {
        Assert.Equal(DeviceType.CPU, ModelDevice.Parse("cpu").type);
        Assert.Equal(ScalarType.BFloat16, ModelDevice.ParseDType("bf16"));
        Assert.Equal(ScalarType.Float32, ModelDevice.ParseDType(null));
        Assert.ThrowsAny<BupoException>(() => ModelDevice.Parse("tpu"));
        Assert.ThrowsAny<BupoException>(() => ModelDevice.ParseDType("int4"));
        if (!ModelDevice.CudaAvailable)
        {
            var e = Assert.ThrowsAny<BupoException>(() => ModelDevice.Parse("cuda"));
            _out.WriteLine(e.Message);
            Assert.Contains("LD_LIBRARY_PATH", e.Message);
        }
    }

    [Fact]
    public void Bf16ModelRunsForwardAndHeadGradients()
    {
        // bf16 is meant for CUDA; on CPU it checks the dtype plumbing (norm statistics in fp32, fp32 log-probs).
        using var model = TestModels.StoriesShaped(ScalarType.BFloat16);
        using var ref32 = TestModels.StoriesShaped();
        using var scope = NewDisposeScope();
        using var batch = TokenBatch.Create(TestModels.Sequences(512, 9, 12, 5), side: PaddingSide.Left);
        using var r = model.Forward(batch, new ForwardOptions { Residuals = ForwardOptions.Blocks(2) });
        using var r32 = ref32.Forward(batch);
        Assert.Equal(ScalarType.BFloat16, r.Logits!.dtype);
        var diff = TestModels.MaxAbsDiff(r.Logits!, r32.Logits!);
        _out.WriteLine($"bf16 vs fp32 logits on CPU: max |Δ| {diff:F3}");
        Assert.True(diff < 1.0);
        var lp = new InternalPolicyHead(model).LogProbs(r.Residuals[2], batch.Tokens.roll(-1, 1));
        Assert.Equal(ScalarType.Float32, lp.dtype);
        lp.sum().backward();
        Assert.Equal(ScalarType.BFloat16, model.Blocks[0].Wq!.grad!.dtype);
        Assert.True(model.Blocks[0].Wq!.grad!.abs().sum().to_type(ScalarType.Float32).item<float>() > 0);
    }

    [Fact]
    public void CudaForwardMatchesCpu()
    {
        if (!ModelDevice.CudaAvailable) Assert.Skip("no CUDA device visible to TorchSharp (CPU libtorch, or no GPU)");
        var path = TinyTrainingModels.StoriesShaped;
        using var gpu = TransformerModel.FromGguf(path, ModelDevice.Parse("cuda"));
        using var cpu = TestModels.StoriesShaped();
        using var scope = NewDisposeScope();
        using var batch = TokenBatch.Create(TestModels.Sequences(512, 10, 12, 7), side: PaddingSide.Left);
        using var gbatch = TokenBatch.Create(TestModels.Sequences(512, 10, 12, 7), gpu.Device, PaddingSide.Left);
        using var rg = gpu.Forward(gbatch);
        using var rc = cpu.Forward(batch);
        Assert.True(TestModels.MaxAbsDiff(rg.Logits!.cpu(), rc.Logits!) < 1e-3);
    }
}
