using BuPO.Hybrid.Gguf;
using BuPO.Hybrid.Llama;
using BuPO.Hybrid.Model;
using BuPO.Hybrid.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace BuPO.Hybrid.RL.Tests;

/// <summary>
/// llama.cpp and libtorch in one process, on one thread, as a training run alternates rollouts and updates. On CPUs
/// with AMX (Sapphire Rapids and later) ggml configures the AMX tiles of a thread once and trusts that configuration
/// forever, while libtorch's oneDNN runs bfloat16 matmuls on AMX and releases the tiles afterwards: ggml's next
/// quantized matmul on that thread then executed a tile instruction with no configuration and the process died of
/// SIGILL (exit code 132; seen as the RL.Tests host crashing once mixed-precision tests ran bf16 on the same xUnit
/// threads as Q8_0 rollouts). On CPUs without AMX this runs the same steps and checks the same equality.
/// </summary>
public sealed class NativeThreadSharingTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("bupo-native-threads-").FullName;

    public NativeThreadSharingTests()
    {
        TorchRuntime.EnsureInitialized();
        torch.set_num_threads(1); // torch's matmul runs on this (the calling) thread, as llama_decode's first worker does
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    [Fact]
    public void Q8DecodeAfterTorchBf16MatmulsOnTheSameThreadIsUnchanged()
    {
        var source = TinyTrainingModels.StoriesShaped;
        var q8 = Path.Combine(_dir, "stories-shape.Q8_0.gguf");
        using (var m = TransformerModel.FromGguf(source)) ModelExporter.Export(m, source, q8, GgmlType.Q8_0);
        using var model = LlamaModel.Load(q8);
        var tokens = Enumerable.Range(0, 16).Select(i => 10 + 7 * i).ToArray();

        // 16 tokens in one batch: ggml's AMX path (a single-token batch takes a VNNI fast path instead).
        float[] Logits()
        {
            using var ctx = LlamaContext.Create(model, new LlamaContextOptions { ContextSize = 64, BatchSize = 16, UBatchSize = 16, Threads = 1 });
            using var batch = new LlamaBatch(tokens.Length);
            for (var i = 0; i < tokens.Length; i++) batch.Add(tokens[i], i, 0, wantLogits: i == tokens.Length - 1);
            ctx.Decode(batch);
            return ctx.GetLogits(-1).ToArray();
        }

        var before = Logits();
        using (var scope = NewDisposeScope())
        {
            // A bf16 linear as the mixed-precision forward runs one (oneDNN; AMX where the CPU has it).
            var x = randn(64, 256, dtype: ScalarType.BFloat16);
            var w = randn(256, 256, dtype: ScalarType.BFloat16);
            var y = nn.functional.linear(x, w);
            Assert.True(double.IsFinite(y.to_type(ScalarType.Float64).abs().sum().item<double>()));
        }
        var after = Logits();
        Assert.Equal(before, after);
    }
}
