using BuPO.Hybrid.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace BuPO.Hybrid.Model.Tests;

/// <summary>
/// The shared-prefix forward (<see cref="PrefixGroupBatch"/>) against one padded sequence per response: the same
/// log-probs of every response token and the same parameter gradients, for the final policy and for block k's internal
/// policy, on random llama / qwen2 / qwen3 models (written by the test, no ../shared) and groups of unequal lengths.
/// </summary>
public sealed class SharedPrefixTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("bupo-prefix-").FullName;

    public SharedPrefixTests() => _ = TestModels.MaxAbsDiff(zeros(1), zeros(1)); // torch set-up (TestModels' static init)

    public void Dispose()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    /// <summary>A random model of the named shape with a vocabulary of its own, in float64.</summary>
    private TransformerModel Random(string shape) => TransformerModel.FromGguf(OwnVocabModels.Write(_dir, shape), CPU, ScalarType.Float64);

    /// <summary>Three prompts of lengths 5, 1 and 9 with 3, 2 and 4 responses of unequal lengths (one of 1 token, one empty).</summary>
    private static (int[] Prompt, int[][] Responses)[] Groups(int vocab)
    {
        var rng = new Random(11);
        int[] Seq(int n) => Enumerable.Range(0, n).Select(_ => rng.Next(1, vocab)).ToArray();
        return
        [
            (Seq(5), [Seq(4), Seq(1), Seq(7)]),
            (Seq(1), [Seq(3), Seq(6)]),
            (Seq(9), [Seq(2), Seq(0), Seq(5), Seq(8)]),
        ];
    }

    /// <summary>Sum of response-token log-probs with per-token weights (so every token's gradient counts), and the log-probs.</summary>
    private static (Tensor Loss, double[] LogProbs) Objective(TransformerModel model, bool shared, int? layer, (int[] Prompt, int[][] Responses)[] groups)
    {
        var gather = new List<long>();
        var targets = new List<long>();
        ForwardResult fwd;
        var options = new ForwardOptions { StopAfterBlock = layer, ComputeLogits = false };
        IDisposable input;
        if (shared)
        {
            var batch = new PrefixGroupBatch(groups.Select(g => new PrefixGroup(g.Prompt, g.Responses.Select(r => r.Take(Math.Max(0, r.Length - 1)).ToArray()).ToArray())).ToArray());
            for (var g = 0; g < groups.Length; g++)
                for (var j = 0; j < groups[g].Responses.Length; j++)
                    for (var t = 0; t < groups[g].Responses[j].Length; t++) { gather.Add(batch.PredictorIndex(g, j, t)); targets.Add(groups[g].Responses[j][t]); }
            fwd = model.Forward(batch, options);
            input = batch;
        }
        else
        {
            var seqs = groups.SelectMany(g => g.Responses.Select(r => (g.Prompt, r))).ToArray();
            var inputs = seqs.Select(x => x.Prompt.Concat(x.r.Take(Math.Max(0, x.r.Length - 1))).ToArray()).ToArray();
            var width = inputs.Max(x => x.Length);
            for (var b = 0; b < seqs.Length; b++)
                for (var t = 0; t < seqs[b].r.Length; t++) { gather.Add((long)b * width + seqs[b].Prompt.Length - 1 + t); targets.Add(seqs[b].r[t]); }
            var batch = TokenBatch.Create(inputs);
            fwd = model.Forward(batch, options);
            input = batch;
        }
        var head = layer is null ? InternalPolicyHead.FullPolicy(model, 1.0) : new InternalPolicyHead(model, LensNorm.Identity, 1.0);
        var hidden = fwd.LastHidden.reshape(-1, fwd.LastHidden.shape[^1]).index_select(0, tensor(gather.ToArray()));
        var lp = head.LogProbs(hidden, tensor(targets.ToArray()));
        using var first = 1.ToScalar();
        using var end = (lp.shape[0] + 1).ToScalar();
        using var count = lp.shape[0].ToScalar();
        var weights = arange(first, end, ScalarType.Float64).div(count);
        var loss = (lp * weights).sum();
        var values = lp.detach().data<double>().ToArray();
        input.Dispose();
        return (loss, values);
    }

    [Theory]
    [InlineData("llama-tiny", null)]
    [InlineData("llama-tiny", 1)]
    [InlineData("qwen2-tiny", null)]
    [InlineData("qwen2-tiny", 0)]
    [InlineData("qwen3-tiny", null)]
    [InlineData("qwen3-tiny", 0)]
    public void SharedPrefixForwardGivesTheLogProbsAndGradientsOfOneSequencePerResponse(string shape, int? layer)
    {
        using var model = Random(shape);
        var groups = Groups(model.Config.VocabSize);
        Dictionary<string, Tensor> Grads(bool shared, out double[] lp)
        {
            foreach (var p in model.parameters()) p.grad = null;
            using var scope = NewDisposeScope();
            var (loss, values) = Objective(model, shared, layer, groups);
            loss.backward();
            lp = values;
            return model.GgufParameters.Where(kv => kv.Value.grad is not null)
                .ToDictionary(kv => kv.Key, kv => kv.Value.grad!.clone().DetachFromDisposeScope());
        }
        var perSeq = Grads(false, out var lpSeq);
        var packed = Grads(true, out var lpPacked);
        Assert.Equal(groups.Sum(g => g.Responses.Sum(r => r.Length)), lpSeq.Length);
        Assert.Equal(lpSeq.Length, lpPacked.Length);
        for (var i = 0; i < lpSeq.Length; i++) Assert.True(Math.Abs(lpSeq[i] - lpPacked[i]) < 1e-5, $"token {i}: {lpPacked[i]} vs {lpSeq[i]}");
        Assert.Equal(perSeq.Keys.OrderBy(x => x), packed.Keys.OrderBy(x => x));
        Assert.NotEmpty(perSeq);
        foreach (var (name, g) in perSeq)
        {
            var scale = Math.Max(1e-3, g.abs().max().item<double>());
            var d = TestModels.MaxAbsDiff(g, packed[name]);
            Assert.True(d < 1e-5 * Math.Max(1, scale), $"{shape} layer {layer?.ToString() ?? "final"}: d/d{name} differs by {d} (max |grad| {scale})");
        }
        foreach (var t in perSeq.Values.Concat(packed.Values)) t.Dispose();
    }

    [Fact]
    public void PackedBatchHoldsEveryTokenOnceAtItsOwnPosition()
    {
        using var batch = new PrefixGroupBatch([new PrefixGroup([5, 6, 7], [[8, 9], [], [10]]), new PrefixGroup([11], [[12, 13, 14]])]);
        // prefixes first (3 + 1), then the non-empty suffixes (2 + 1 + 3): 10 tokens, no padding.
        Assert.Equal(10, batch.TokenCount);
        Assert.Equal(new long[] { 5, 6, 7, 11, 8, 9, 10, 12, 13, 14 }, batch.Tokens.data<long>().ToArray());
        Assert.Equal(new long[] { 0, 1, 2, 0, 3, 4, 3, 1, 2, 3 }, batch.Positions.data<long>().ToArray());
        Assert.Equal(2, batch.PredictorIndex(0, 1, 0));   // the empty suffix's first token is predicted by the prompt's last
        Assert.Equal(4, batch.PredictorIndex(0, 0, 1));   // token 1 of response 0 by its token 0 (flat 4)
        Assert.Throws<ArgumentOutOfRangeException>(() => batch.SuffixIndex(0, 1, 0));
        Assert.Throws<ArgumentException>(() => new PrefixGroupBatch([new PrefixGroup([], [[1]])]));
    }
}
