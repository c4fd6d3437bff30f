using BuPO.Hybrid.Llama;
using BuPO.Hybrid.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace BuPO.Hybrid.Model.Tests;

/// <summary>The captured module tensors (X, A, M, Y, F) against the llama.cpp graph nodes of the same name.</summary>
[Collection("llama.cpp")]
public class ModuleCaptureParityTests
{
    private readonly ITestOutputHelper _out;
    public ModuleCaptureParityTests(ITestOutputHelper output) { _out = output; LlamaReference.EnsureBackend(); }

    [Theory]
    [InlineData("stories")]
    [InlineData("random")]
    public void LlamaModuleCapturesMatchLlamaCppNodes(string modelName)
    {
        var path = TestModels.ParityModel(modelName);
        using var model = TransformerModel.FromGguf(path);
        using var llama = LlamaModel.Load(path);
        var seq = TestModels.Sequences(512, 51, 19)[0];
        seq[0] = 1;
        var n = seq.Length; var L = model.Config.LayerCount;
        var names = Enumerable.Range(0, L).SelectMany(k => new[] { $"attn_norm-{k}", $"attn_out-{k}", $"ffn_inp-{k}", $"ffn_norm-{k}", $"ffn_out-{k}" }).Append("result_norm").ToArray();
        var probe = new TensorProbe(names);
        LlamaReference.Logits(llama, seq, probe);
        using var scope = NewDisposeScope();
        using var batch = TokenBatch.Create([seq]);
        var all = ForwardOptions.AllBlocks(L);
        using var r = model.Forward(batch, new ForwardOptions
        {
            AttnNormInputs = all, AttnOutputs = all, FfnInputs = all, FfnNormInputs = all, FfnOutputs = all, CaptureFinalNormed = true,
        });
        double worst = 0;
        void Check(string name, Tensor ours)
        {
            var t = probe.Get(name);
            _out.WriteLine($"{name}: {t.Rows} x {t.Cols}");
            // (llama.cpp's llama graph names the residual after the FFN add "ffn_out-N" too; the probe's capture is the
            // FFN output, as this comparison with F shows.)
            Assert.Equal(n, t.Rows);
            var theirs = torch.tensor(t.Data, [n, t.Cols]);
            worst = Math.Max(worst, TestModels.MaxAbsDiff(ours.select(0, 0), theirs));
        }
        for (var k = 0; k < L; k++)
        {
            Check($"attn_norm-{k}", r.AttnNormInputs[k]);
            Check($"attn_out-{k}", r.AttnOutputs[k]);
            Check($"ffn_inp-{k}", r.FfnInputs[k]);
            Check($"ffn_norm-{k}", r.FfnNormInputs[k]);
            Check($"ffn_out-{k}", r.FfnOutputs[k]);
        }
        Check("result_norm", r.FinalNormed!);
        _out.WriteLine($"max |Δ| over X, A, M, Y, F of every block and result_norm: {worst:E2}");
        Assert.True(worst < 1e-4);
    }
}
