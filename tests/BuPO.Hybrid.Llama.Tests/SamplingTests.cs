namespace BuPO.Hybrid.Llama.Tests;

/// <summary>llama.cpp's own sampler chain (the raw decode loop's sampler in bench rollout).</summary>
[Collection(LlamaCollection.Name)]
public class SamplingTests(LlamaFixture fx)
{
    /// <summary>A context holding the logits of the prompt's last token at batch entry <c>Index</c>.</summary>
    private (LlamaContext Context, int Index) Decoded(string prompt)
    {
        var model = fx.StoriesShaped;
        var ctx = LlamaContext.Create(model, new LlamaContextOptions { Threads = 1, ContextSize = 256 });
        var tokens = model.Vocab.Encode(prompt);
        using var batch = new LlamaBatch(64);
        for (int i = 0; i < tokens.Length; i++) batch.Add(tokens[i], i, 0, i == tokens.Length - 1);
        ctx.Decode(batch);
        return (ctx, tokens.Length - 1);
    }

    private static int ArgMax(ReadOnlySpan<float> x)
    {
        int best = 0;
        for (int i = 1; i < x.Length; i++) if (x[i] > x[best]) best = i;
        return best;
    }

    [Fact]
    public void GreedyAndTopKOnePickTheArgmax()
    {
        var (ctx, index) = Decoded("Once upon a time");
        using (ctx)
        {
            int want = ArgMax(ctx.GetLogits(index));
            using var greedy = new LlamaNativeSampler(temperature: 0f, seed: 1);
            using var top1 = new LlamaNativeSampler(temperature: 1f, seed: 1, topK: 1);
            for (int k = 0; k < 5; k++)
            {
                Assert.Equal(want, greedy.Sample(ctx, index));
                Assert.Equal(want, top1.Sample(ctx, index));
            }
        }
    }

    [Fact]
    public void SameSeedSameDrawsAndTheDrawsVary()
    {
        var (ctx, index) = Decoded("Lily");
        using (ctx)
        {
            using var a = new LlamaNativeSampler(temperature: 1.5f, seed: 5, topK: 50, minP: 0.001f);
            using var b = new LlamaNativeSampler(temperature: 1.5f, seed: 5, topK: 50, minP: 0.001f);
            var drawsA = Enumerable.Range(0, 40).Select(_ => a.Sample(ctx, index)).ToArray();
            var drawsB = Enumerable.Range(0, 40).Select(_ => b.Sample(ctx, index)).ToArray();
            Assert.Equal(drawsA, drawsB);
            Assert.True(drawsA.Distinct().Count() > 1, "40 draws at T=1.5 should not all give the same token");
            Assert.All(drawsA, t => Assert.InRange(t, 0, fx.StoriesShaped.VocabSize - 1));
        }
    }

    [Fact]
    public void AnEntryWithoutLogitsIsAnErrorNotAnAbort()
    {
        var (ctx, index) = Decoded("Once upon a time");
        using (ctx)
        {
            using var s = new LlamaNativeSampler(temperature: 1f, seed: 1);
            Assert.Throws<BupoException>(() => s.Sample(ctx, index - 1));
        }
    }

    [Fact]
    public void RejectsBadOptions()
    {
        Assert.Throws<BupoException>(() => new LlamaNativeSampler(temperature: -1, seed: 0));
        Assert.Throws<BupoException>(() => new LlamaNativeSampler(temperature: 1, seed: 0, topP: 0));
        Assert.Throws<BupoException>(() => new LlamaNativeSampler(temperature: 1, seed: 0, minP: 1));
        Assert.Throws<BupoException>(() => new LlamaNativeSampler(temperature: 1, seed: 0, topK: -2));
    }
}
