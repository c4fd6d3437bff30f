using BuPO.Hybrid.Rollout;

namespace BuPO.Hybrid.Rollout.Tests;

public class TokenSamplerTests
{
    private static float[] RandomLogits(int n, int seed, float scale = 3f)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1) * scale).ToArray();
    }

    private static double[] Softmax(float[] logits, double t = 1.0, ISet<int>? keep = null)
    {
        double max = logits.Where((_, i) => keep == null || keep.Contains(i)).Max() / t;
        var p = logits.Select((v, i) => keep == null || keep.Contains(i) ? Math.Exp(v / t - max) : 0).ToArray();
        double z = p.Sum();
        return p.Select(x => x / z).ToArray();
    }

    private static (int[] Counts, List<(int Tok, float Raw, float Samp)> Draws) Draw(float[] logits, RolloutSampling s, int draws, ulong seed = 1)
    {
        var sampler = new TokenSampler();
        var prm = new SamplingParams(s);
        var rng = new RolloutRng(seed);
        var counts = new int[logits.Length];
        var list = new List<(int, float, float)>();
        for (int i = 0; i < draws; i++)
        {
            int t = sampler.Sample(logits, prm, ref rng, out float raw, out float samp);
            counts[t]++;
            list.Add((t, raw, samp));
        }
        return (counts, list);
    }

    [Theory]
    [InlineData(1.0)]
    [InlineData(0.5)]
    [InlineData(1.7)]
    public void UntruncatedDrawsFollowTheSoftmaxAndReportItsLogProbs(double t)
    {
        var logits = RandomLogits(5000, 1);   // spans several draw blocks
        logits[17] = 6f;
        logits[4321] = 5.5f;
        var p = Softmax(logits, t);
        var raw = Softmax(logits);
        var (counts, draws) = Draw(logits, new RolloutSampling { Temperature = t }, 40000);
        foreach (var tok in new[] { 17, 4321 })
            Assert.Equal(p[tok], counts[tok] / 40000.0, 3 * Math.Sqrt(p[tok] / 40000) + 1e-4);
        foreach (var (tok, r, s) in draws.Take(200))
        {
            Assert.Equal(Math.Log(raw[tok]), r, 1e-4);
            Assert.Equal(Math.Log(p[tok]), s, 1e-4);
        }
        // chi-square over coarse bins (1000 tokens each) stays sane
        double chi = 0;
        for (int b = 0; b < 5; b++)
        {
            double expected = p.Skip(b * 1000).Take(1000).Sum() * 40000;
            double observed = counts.Skip(b * 1000).Take(1000).Sum();
            chi += (observed - expected) * (observed - expected) / expected;
        }
        Assert.True(chi < 25, $"chi-square {chi}");
    }

    [Fact]
    public void TopKTopPMinPKeepTheRightSets()
    {
        var logits = new float[] { 2f, 1f, 0.5f, 3f, -1f, 2.9f, 0f, -5f };
        // top-k 3 -> {3, 5, 0}
        var (counts, draws) = Draw(logits, new RolloutSampling { TopK = 3 }, 3000);
        Assert.Equal(new[] { 0, 3, 5 }, counts.Select((c, i) => (c, i)).Where(x => x.c > 0).Select(x => x.i).Order());
        var keep = new HashSet<int> { 0, 3, 5 };
        var p = Softmax(logits, 1, keep);
        foreach (var (tok, r, s) in draws.Take(50))
        {
            Assert.Equal(Math.Log(p[tok]), s, 1e-5);
            Assert.Equal(Math.Log(Softmax(logits)[tok]), r, 1e-5);
        }
        // top-p: probabilities sorted 3(0.33), 5(0.30), 0(0.18), 1(0.07)...; p = 0.6 keeps {3, 5} (0.33 < 0.6 <= 0.63)
        var full = Softmax(logits);
        Assert.True(full[3] < 0.6 && full[3] + full[5] >= 0.6);
        (counts, _) = Draw(logits, new RolloutSampling { TopP = 0.6 }, 3000);
        Assert.Equal(new[] { 3, 5 }, counts.Select((c, i) => (c, i)).Where(x => x.c > 0).Select(x => x.i).Order());
        // min-p 0.3: keep p >= 0.3 * p_max, i.e. logit >= 3 + ln 0.3 = 1.796 -> {0, 3, 5}
        (counts, draws) = Draw(logits, new RolloutSampling { MinP = 0.3, Temperature = 2 }, 3000);
        Assert.Equal(new[] { 0, 3, 5 }, counts.Select((c, i) => (c, i)).Where(x => x.c > 0).Select(x => x.i).Order());
        p = Softmax(logits, 2, keep);
        foreach (var (tok, _, s) in draws.Take(50)) Assert.Equal(Math.Log(p[tok]), s, 1e-5);
        // top-k larger than the vocabulary: no truncation
        (counts, _) = Draw(logits, new RolloutSampling { TopK = 100 }, 20000);
        Assert.True(counts[7] >= 0 && counts.Count(c => c > 0) >= 7);
    }

    [Fact]
    public void TopPOnALargeVocabularyMatchesASortedReference()
    {
        var logits = RandomLogits(20000, 3, scale: 8f);
        var order = Enumerable.Range(0, logits.Length).OrderByDescending(i => logits[i]).ToArray();
        var full = Softmax(logits);
        double cum = 0;
        var nucleus = new HashSet<int>();
        foreach (var i in order)
        {
            nucleus.Add(i);
            cum += full[i];
            if (cum >= 0.9) break;
        }
        var (counts, draws) = Draw(logits, new RolloutSampling { TopP = 0.9 }, 1000);
        Assert.All(counts.Select((c, i) => (c, i)).Where(x => x.c > 0), x => Assert.Contains(x.i, nucleus));
        var p = Softmax(logits, 1, nucleus);
        foreach (var (tok, _, s) in draws.Take(100)) Assert.Equal(Math.Log(p[tok]), s, 1e-4);
    }

    [Fact]
    public void GreedyAndStreamsAreDeterministic()
    {
        var logits = RandomLogits(1000, 9);
        var (counts, draws) = Draw(logits, new RolloutSampling { Temperature = 0 }, 10);
        Assert.Equal(10, counts[Array.IndexOf(logits, logits.Max())]);
        Assert.All(draws, d => Assert.Equal(0f, d.Samp));
        Assert.Equal(Draw(logits, new RolloutSampling(), 100, seed: 5).Draws, Draw(logits, new RolloutSampling(), 100, seed: 5).Draws);
        Assert.NotEqual(Draw(logits, new RolloutSampling(), 100, seed: 5).Draws, Draw(logits, new RolloutSampling(), 100, seed: 6).Draws);
        Assert.NotEqual(RolloutRng.SequenceSeed(1, 0, 1), RolloutRng.SequenceSeed(1, 1, 0));
        Assert.NotEqual(RolloutRng.SequenceSeed(1, 0, 0), RolloutRng.SequenceSeed(2, 0, 0));
        var nan = new float[] { 1f, float.NaN };
        Assert.Throws<BupoException>(() => Draw(nan, new RolloutSampling(), 1));
    }
}
