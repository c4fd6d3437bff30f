namespace BuPO.Hybrid.Llama.Tests;

[Collection(LlamaCollection.Name)]
public class SamplingTests(LlamaFixture fx)
{
    private float[] PromptLogits(string prompt)
    {
        var model = fx.Stories;
        using var ctx = LlamaContext.Create(model, new LlamaContextOptions { Threads = 1, ContextSize = 256 });
        var tokens = model.Vocab.Encode(prompt);
        using var batch = new LlamaBatch(64);
        for (int i = 0; i < tokens.Length; i++) batch.Add(tokens[i], i, 0, i == tokens.Length - 1);
        ctx.Decode(batch);
        Assert.Equal(ctx.GetLogits(tokens.Length - 1).ToArray(), ctx.GetLogits(-1).ToArray());
        return ctx.GetLogits(-1).ToArray();
    }

    /// <summary>log_softmax(x / t) computed in double, independently of the library.</summary>
    private static double[] LogSoftmax(IReadOnlyList<float> x, double t = 1)
    {
        double max = x.Max(v => v / t);
        double lse = max + Math.Log(x.Sum(v => Math.Exp(v / t - max)));
        return x.Select(v => v / t - lse).ToArray();
    }

    [Fact]
    public void TemperatureOneWithoutTruncationGivesEqualLogProbs()
    {
        var logits = PromptLogits("Once upon a time");
        var want = LogSoftmax(logits);
        using var s = LlamaSampler.Create(new LlamaSamplerOptions { Temperature = 1f, Seed = 1234 });
        var seen = new HashSet<int>();
        for (int k = 0; k < 50; k++)
        {
            var r = s.Sample(logits);
            seen.Add(r.Token);
            Assert.Equal(r.RawLogProb, r.BehaviorLogProb, 1e-5f);
            Assert.Equal(want[r.Token], r.RawLogProb, 1e-4);
        }
        Assert.True(seen.Count > 1, "50 draws at T=1 should not all give the same token");
    }

    [Fact]
    public void GreedyPicksArgmax()
    {
        var logits = PromptLogits("One day, Lily met a");
        int argmax = Array.IndexOf(logits, logits.Max());
        using var s = LlamaSampler.Create(LlamaSamplerOptions.Greedy);
        var r = s.Sample(logits);
        Assert.Equal(argmax, r.Token);
        Assert.Equal(0f, r.BehaviorLogProb);
        Assert.Equal(LogSoftmax(logits)[argmax], r.RawLogProb, 1e-4);
    }

    [Fact]
    public void TruncatedSamplingLogProbIsOverTheSurvivorsAtTemperature()
    {
        var logits = PromptLogits("The cat");
        const int k = 20;
        const float t = 0.7f;
        var top = Enumerable.Range(0, logits.Length).OrderByDescending(i => logits[i]).Take(k).ToArray();
        var topLogits = top.Select(i => logits[i]).ToArray();
        var wantSampling = LogSoftmax(topLogits, t);
        var wantRaw = LogSoftmax(logits);
        using var s = LlamaSampler.Create(new LlamaSamplerOptions { Temperature = t, TopK = k, Seed = 99 });
        for (int n = 0; n < 30; n++)
        {
            var r = s.Sample(logits);
            int j = Array.IndexOf(top, r.Token);
            Assert.True(j >= 0, $"token {r.Token} is not in the top {k}");
            Assert.Equal(wantSampling[j], r.BehaviorLogProb, 1e-4);
            Assert.Equal(wantRaw[r.Token], r.RawLogProb, 1e-4);
        }
    }

    [Fact]
    public void SameSeedSameDraws()
    {
        var logits = PromptLogits("Lily");
        using var a = LlamaSampler.Create(new LlamaSamplerOptions { Temperature = 1.3f, TopP = 0.95f, MinP = 0.01f, Seed = 5 });
        using var b = LlamaSampler.Create(new LlamaSamplerOptions { Temperature = 1.3f, TopP = 0.95f, MinP = 0.01f, Seed = 5 });
        var da = Enumerable.Range(0, 40).Select(_ => a.Sample(logits).Token).ToArray();
        var db = Enumerable.Range(0, 40).Select(_ => b.Sample(logits).Token).ToArray();
        Assert.Equal(da, db);
    }

    [Fact]
    public void RejectsBadOptions()
    {
        Assert.Throws<BupoException>(() => LlamaSampler.Create(new LlamaSamplerOptions { Temperature = -1 }));
        Assert.Throws<BupoException>(() => LlamaSampler.Create(new LlamaSamplerOptions { TopP = 0 }));
        Assert.Throws<BupoException>(() => LlamaSampler.Create(new LlamaSamplerOptions { MinP = 1 }));
        Assert.Throws<BupoException>(() => LlamaSampler.Create(new LlamaSamplerOptions { TopK = -2 }));
    }
}
