using BuPO.Hybrid.Gguf;
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
    [InlineData(PaddingSide.Right, "stories")]
    [InlineData(PaddingSide.Left, "stories")]
    [InlineData(PaddingSide.Right, "random")]
    [InlineData(PaddingSide.Left, "random")]
    public void LlamaLogitsMatchLlamaCpp(PaddingSide side, string model)
    {
        var path = TestModels.ParityModel(model);
        var seqs = TestModels.Sequences(512, 31, 24, 17, 31, 9);
        foreach (var s in seqs) s[0] = 1; // BOS first, like real prompts
        var (worst, positions) = CompareLogits(path, seqs, side, _out);
        _out.WriteLine($"{model} ({side} padding): max |Δlogit| torch vs llama.cpp = {worst:E2} over {positions} positions");
        Assert.True(positions >= 64);
        Assert.True(worst <= 1e-3, $"max |Δlogit| {worst}");
    }

    /// <summary>
    /// Per-layer internal-policy entropy (both norms) from the TorchSharp forward vs the same head applied to llama.cpp's
    /// <c>l_out-N</c> captures (and <c>embd</c> for H^0): the residual streams agree, so do the entropies.
    /// </summary>
    internal static double CompareLayerEntropies(string path, int[][] seqs, ITestOutputHelper? log = null)
    {
        using var model = TransformerModel.FromGguf(path);
        using var llama = LlamaModel.Load(path);
        using var scope = NewDisposeScope();
        var c = model.Config;
        using var batch = TokenBatch.Create(seqs);
        using var r = model.Forward(batch, new ForwardOptions { CaptureEmbeddings = true, Residuals = ForwardOptions.AllBlocks(c.LayerCount), ComputeLogits = false });
        var names = Enumerable.Range(0, c.LayerCount).Select(k => $"l_out-{k}").Append("embd").ToArray();
        double worst = 0;
        var sums = new double[2, c.LayerCount + 1];
        for (var i = 0; i < seqs.Length; i++)
        {
            var probe = new TensorProbe(names);
            LlamaReference.Logits(llama, seqs[i], probe);
            var n = seqs[i].Length;
            for (var layer = -1; layer < c.LayerCount; layer++)
            {
                var captured = probe.Get(layer < 0 ? "embd" : $"l_out-{layer}");
                Assert.Equal(n, captured.Rows);
                Assert.Equal(c.EmbeddingLength, captured.Cols);
                var theirs = torch.tensor(captured.Data, [n, c.EmbeddingLength]);
                var ours = (layer < 0 ? r.Embeddings! : r.Residuals[layer]).select(0, i).narrow(0, 0, n);
                foreach (var (norm, ni) in new[] { (LensNorm.Identity, 0), (LensNorm.Final, 1) })
                {
                    var head = new InternalPolicyHead(model, norm, chunkSize: 16);
                    var eOurs = head.Entropy(ours);
                    var eTheirs = head.Entropy(theirs);
                    worst = Math.Max(worst, TestModels.MaxAbsDiff(eOurs, eTheirs));
                    sums[ni, layer + 1] += eOurs.sum().item<float>();
                }
            }
        }
        var total = seqs.Sum(s => s.Length);
        for (var ni = 0; ni < 2; ni++)
            log?.WriteLine($"  mean entropy ({(ni == 0 ? "identity" : "final norm")}) embd, l_out-0..: " +
                           string.Join(" ", Enumerable.Range(0, c.LayerCount + 1).Select(l => (sums[ni, l] / total).ToString("F3"))));
        return worst;
    }

    [Theory]
    [InlineData("stories")]
    [InlineData("random")]
    public void LlamaLayerEntropiesMatchLlamaCppProbe(string model)
    {
        var path = TestModels.ParityModel(model);
        var seqs = TestModels.Sequences(512, 32, 20, 13, 28, 7);
        var worst = CompareLayerEntropies(path, seqs, _out);
        _out.WriteLine($"{model}: max |Δentropy| per layer, both norms, torch vs llama.cpp l_out captures = {worst:E2} nats");
        Assert.True(worst <= 1e-4, $"max |Δentropy| {worst}");
    }

    public static TheoryData<string, bool, int?> QwenShapes => new()
    {
        { "qwen2", true, null },   // tied embeddings, Q/K/V biases, NEOX rope, GQA 4/2
        { "qwen3", false, 32 },    // own output.weight, Q/K norms, head_dim 32 != n_embd/n_head
    };

    [Theory]
    [MemberData(nameof(QwenShapes))]
    public void RandomQwenLogitsAndEntropiesMatchLlamaCpp(string arch, bool tied, int? headDim)
    {
        var dir = Directory.CreateTempSubdirectory("bupo-qwen-").FullName;
        try
        {
            // RandomGgufModel (gguf branch) with the generated vocabulary; projections at 1/sqrt(d) so every block matters.
            var path = Path.Combine(dir, $"random-{arch}.gguf");
            var spec = RandomModelSpec.Named($"{arch}-tiny") with { Layers = 3, HeadDim = headDim, TiedEmbeddings = tied, WeightStd = 0.125f, NormNoise = 0.2f, Seed = 3 };
            RandomGgufModel.Write(path, spec, TinyTrainingModels.Vocab);
            var config = TransformerConfig.FromGguf(path);
            _out.WriteLine(config.ToString());
            Assert.Equal(tied, config.TiedEmbeddings);
            Assert.Equal(RopeStyle.Neox, config.Rope);
            var seqs = TestModels.Sequences(config.VocabSize, 33, 22, 11, 27, 6);
            var (worst, positions) = CompareLogits(path, seqs, PaddingSide.Left, _out);
            _out.WriteLine($"{arch}: max |Δlogit| torch (left-padded batch) vs llama.cpp = {worst:E2} over {positions} positions");
            Assert.True(positions >= 64);
            Assert.True(worst <= 1e-3, $"max |Δlogit| {worst}");
            var ent = CompareLayerEntropies(path, seqs.Take(2).ToArray(), _out);
            _out.WriteLine($"{arch}: max |Δentropy| per layer, both norms = {ent:E2} nats");
            Assert.True(ent <= 1e-4, $"max |Δentropy| {ent}");
        }
        finally { Directory.Delete(dir, true); }
    }
}
