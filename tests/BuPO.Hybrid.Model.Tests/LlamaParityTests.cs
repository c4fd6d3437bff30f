using BuPO.Hybrid.Llama;
using BuPO.Hybrid.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace BuPO.Hybrid.Model.Tests;

/// <summary>TorchSharp forward vs llama.cpp on the same GGUF.</summary>
[Collection("llama.cpp")]
public class LlamaParityTests
{
    private readonly ITestOutputHelper _out;
    public LlamaParityTests(ITestOutputHelper output) { _out = output; LlamaReference.EnsureBackend(); }

    /// <summary>Max |Δlogit| between a padded torch batch and llama.cpp decoding each sequence alone.</summary>
    internal static (double MaxDiff, int Positions) CompareLogits(string path, int[][] seqs, PaddingSide side, ITestOutputHelper? log = null)
    {
        using var model = TransformerModel.FromGguf(path);
        using var llama = LlamaModel.Load(path);
        using var scope = NewDisposeScope();
        using var batch = TokenBatch.Create(seqs, side: side);
        using var r = model.Forward(batch);
        var logits = r.Logits!;
        double worst = 0; var positions = 0;
        for (var i = 0; i < seqs.Length; i++)
        {
            var reference = LlamaReference.Logits(llama, seqs[i]);
            var ours = logits.select(0, i).narrow(0, batch.Offsets[i], seqs[i].Length).contiguous().data<float>().ToArray();
            var v = model.Config.VocabSize;
            double seqWorst = 0;
            for (var p = 0; p < seqs[i].Length; p++, positions++)
                for (var j = 0; j < v; j++)
                    seqWorst = Math.Max(seqWorst, Math.Abs(ours[p * v + j] - reference[p][j]));
            log?.WriteLine($"  sequence {i} (length {seqs[i].Length}): max |Δlogit| {seqWorst:E2}");
            worst = Math.Max(worst, seqWorst);
        }
        return (worst, positions);
    }

    [Theory]
    [InlineData(PaddingSide.Right)]
    [InlineData(PaddingSide.Left)]
    public void StoriesLogitsMatchLlamaCpp(PaddingSide side)
    {
        var path = SharedAssets.RequireFile(SharedAssets.StoriesModel);
        var seqs = TestModels.Sequences(512, 31, 24, 17, 31, 9);
        foreach (var s in seqs) s[0] = 1; // BOS first, like real prompts
        var (worst, positions) = CompareLogits(path, seqs, side, _out);
        _out.WriteLine($"stories260K ({side} padding): max |Δlogit| torch vs llama.cpp = {worst:E2} over {positions} positions");
        Assert.True(positions >= 64);
        Assert.True(worst <= 1e-3, $"max |Δlogit| {worst}");
    }
}
