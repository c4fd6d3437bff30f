using BuPO.Hybrid.Tests.Support;

namespace BuPO.Hybrid.Llama.Tests;

/// <summary>Every test that calls into llama.cpp runs in this collection (one at a time, one loaded model of each kind).</summary>
[CollectionDefinition(Name)]
public sealed class LlamaCollection : ICollectionFixture<LlamaFixture>
{
    public const string Name = "llama.cpp";
}

/// <summary>
/// Initializes llama.cpp once; loads stories260K lazily (the test skips when the shared asset is absent) and a random
/// model of its shape (<see cref="RandomTestModels.StoriesShape"/>, always available) for tests of properties any model has.
/// </summary>
public sealed class LlamaFixture : IDisposable
{
    private LlamaModel? _stories;
    private LlamaModel? _storiesShaped;
    private readonly object _gate = new();

    public LlamaFixture()
    {
        LlamaBackend.Initialize(log: (level, line) => Log.Add($"{level}: {line}"), minLevel: LlamaLogLevel.Warning);
        Dir = Directory.CreateTempSubdirectory("bupo-llama-tests-").FullName;
        StoriesShapedPath = RandomTestModels.StoriesShaped(Dir);
    }

    /// <summary>Scratch folder holding the random model, deleted at the end.</summary>
    public string Dir { get; }

    /// <summary>The file of <see cref="StoriesShaped"/>: random weights of stories260K's shape, the generated 512-token SentencePiece vocabulary.</summary>
    public string StoriesShapedPath { get; }

    /// <summary>The random model of stories260K's shape, loaded once.</summary>
    public LlamaModel StoriesShaped
    {
        get { lock (_gate) return _storiesShaped ??= LlamaModel.Load(StoriesShapedPath); }
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

    public void Dispose()
    {
        _stories?.Dispose();
        _storiesShaped?.Dispose();
        try { Directory.Delete(Dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
