using BuPO.Hybrid.Llama;
using BuPO.Hybrid.Rollout;

namespace BuPO.Hybrid.Rollout.Tests;

/// <summary>Independent references for the engine: one sequence alone in its own context, and full-logits re-scoring (F32 KV caches, as the engine under test uses).</summary>
internal static class RolloutReference
{
    /// <summary>Generates rollout (p, g) alone: prompt decoded in a fresh single-sequence context, then token by token with the same stream.</summary>
    public static (int[] Tokens, float[] Raw, float[] Sampling) GenerateAlone(LlamaModel model, int[] prompt, RolloutSampling sampling, ulong seed, int p, int g)
    {
        using var ctx = LlamaContext.Create(model, new LlamaContextOptions
        {
            ContextSize = (prompt.Length + sampling.MaxTokens + 255) / 256 * 256, MaxSequences = 1, BatchSize = 512, Threads = 1,
            KvCacheType = BuPO.Hybrid.Gguf.GgmlType.F32, FlashAttention = false,
        });
        using var batch = new LlamaBatch(512);
        for (int i = 0; i < prompt.Length; i++) batch.Add(prompt[i], i, 0, i == prompt.Length - 1);
        ctx.Decode(batch);
        int index = prompt.Length - 1;
        var rng = new RolloutRng(RolloutRng.SequenceSeed(seed, p, g));
        var sampler = new TokenSampler();
        var prm = new SamplingParams(sampling);
        var tokens = new List<int>();
        var raw = new List<float>();
        var samp = new List<float>();
        while (true)
        {
            int tok = sampler.Sample(ctx.GetLogits(index), prm, ref rng, out float r, out float s);
            tokens.Add(tok);
            raw.Add(r);
            samp.Add(s);
            if (model.Vocab.IsEndOfGeneration(tok) && !sampling.IgnoreEndOfSequence) break;
            if (tokens.Count >= sampling.MaxTokens) break;
            batch.Clear();
            index = batch.Add(tok, prompt.Length + tokens.Count - 1, 0, true);
            ctx.Decode(batch);
        }
        return (tokens.ToArray(), raw.ToArray(), samp.ToArray());
    }

    /// <summary>Decodes prompt + response in one batch with logits at every position; returns the logits rows that predicted each response token.</summary>
    public static float[][] ResponseLogits(LlamaModel model, int[] prompt, int[] response)
    {
        int n = prompt.Length + response.Length;
        int cap = (n + 255) / 256 * 256;
        using var ctx = LlamaContext.Create(model, new LlamaContextOptions
        {
            ContextSize = cap, MaxSequences = 1, BatchSize = cap, UBatchSize = cap, Threads = 1,
            KvCacheType = BuPO.Hybrid.Gguf.GgmlType.F32, FlashAttention = false,
        });
        using var batch = new LlamaBatch(cap);
        for (int i = 0; i < n; i++) batch.Add(i < prompt.Length ? prompt[i] : response[i - prompt.Length], i, 0, true);
        ctx.Decode(batch);
        var rows = new float[response.Length][];
        for (int j = 0; j < response.Length; j++) rows[j] = ctx.GetLogits(prompt.Length - 1 + j).ToArray();
        return rows;
    }

    /// <summary>log-softmax(row / temperature)[token] in double precision.</summary>
    public static double LogSoftmax(float[] row, int token, double temperature = 1.0)
    {
        double max = double.NegativeInfinity;
        foreach (var v in row) max = Math.Max(max, v / temperature);
        double sum = 0;
        foreach (var v in row) sum += Math.Exp(v / temperature - max);
        return row[token] / temperature - max - Math.Log(sum);
    }
}
