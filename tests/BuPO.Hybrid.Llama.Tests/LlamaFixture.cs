using BuPO.Hybrid.Tests.Support;

namespace BuPO.Hybrid.Llama.Tests;

/// <summary>Every test that calls into llama.cpp runs in this collection (one at a time, one loaded stories260K).</summary>
[CollectionDefinition(Name)]
public sealed class LlamaCollection : ICollectionFixture<LlamaFixture>
{
    public const string Name = "llama.cpp";
}

/// <summary>Initializes llama.cpp once and loads stories260K lazily (null model when the shared asset is absent).</summary>
public sealed class LlamaFixture : IDisposable
{
    private LlamaModel? _stories;
    private readonly object _gate = new();

    public LlamaFixture()
    {
        LlamaBackend.Initialize(log: (level, line) => Log.Add($"{level}: {line}"), minLevel: LlamaLogLevel.Warning);
    }

    /// <summary>Warnings and errors llama.cpp logged.</summary>
    public System.Collections.Concurrent.ConcurrentBag<string> Log { get; } = [];

    /// <summary>stories260K (skips the test when the shared asset is absent).</summary>
    public LlamaModel Stories
    {
        get
        {
            var path = SharedAssets.RequireFile(SharedAssets.StoriesModel);
            lock (_gate) return _stories ??= LlamaModel.Load(path);
        }
    }

    /// <summary>
    /// The plainest greedy decode, independent of the rollout engine: clears the context, decodes the prompt, then one
    /// token at a time, always the argmax; returns the generated ids and their log-softmax (temperature 1).
    /// </summary>
    public static (int[] Tokens, float[] RawLogProbs) GreedyDecode(LlamaContext ctx, int[] prompt, int maxTokens)
    {
        ctx.Clear();
        using var batch = new LlamaBatch(Math.Max(prompt.Length, 1));
        for (int i = 0; i < prompt.Length; i++) batch.Add(prompt[i], i, 0, i == prompt.Length - 1);
        var tokens = new int[maxTokens];
        var logProbs = new float[maxTokens];
        for (int t = 0; t < maxTokens; t++)
        {
            ctx.Decode(batch);
            var logits = ctx.GetLogits(batch.Count - 1);
            int best = 0;
            for (int v = 1; v < logits.Length; v++) if (logits[v] > logits[best]) best = v;
            double max = logits[best], sum = 0;
            foreach (var x in logits) sum += Math.Exp(x - max);
            tokens[t] = best;
            logProbs[t] = (float)-Math.Log(sum);
            batch.Clear();
            batch.Add(best, prompt.Length + t, 0, true);
        }
        return (tokens, logProbs);
    }

    public void Dispose() => _stories?.Dispose();
}
