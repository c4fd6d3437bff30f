using BuPO.Hybrid.Gguf;
using BuPO.Hybrid.Llama;
using BuPO.Hybrid.Model;
using BuPO.Hybrid.Tests.Support;
using TorchSharp;

namespace BuPO.Hybrid.Analysis.Tests;

/// <summary>
/// The test models: stories260K (llama) and tiny random qwen2 (tied, Q/K/V biases) and qwen3 (own output.weight, Q/K
/// norms, head_dim != n_embd/n_head) GGUFs with the real Qwen2 tokenizer, written once per test run.
/// </summary>
public sealed class AnalyzerModels : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("bupo-analyze-models-").FullName;
    private readonly Dictionary<string, string> _paths = new();
    private readonly object _gate = new();

    public AnalyzerModels()
    {
        LlamaBackend.Initialize(minLevel: LlamaLogLevel.Error);
        TorchRuntime.EnsureInitialized();
        // One thread: on a busy 2-core machine spinning worker threads cost far more than they give.
        torch.set_num_threads(1);
    }

    public static IReadOnlyList<string> Names { get; } = ["stories", "qwen2", "qwen3"];

    /// <summary>The GGUF of a test model (skips when ../shared is absent).</summary>
    public string Path(string name)
    {
        if (name == "stories") return SharedAssets.RequireFile(SharedAssets.StoriesModel);
        var vocab = SharedAssets.RequireFile(SharedAssets.Qwen2Vocab);
        lock (_gate)
        {
            if (_paths.TryGetValue(name, out var p)) return p;
            p = System.IO.Path.Combine(_dir, $"random-{name}.gguf");
            var (tied, headDim) = name == "qwen2" ? (true, (int?)null) : (false, (int?)32);
            var spec = RandomModelSpec.Named($"{name}-tiny") with { Layers = 3, HeadDim = headDim, TiedEmbeddings = tied, WeightStd = 0.125f, NormNoise = 0.2f, Seed = 3 };
            RandomGgufModel.Write(p, spec, vocab);
            return _paths[name] = p;
        }
    }

    public static string[] Prompts { get; } = ["Once upon a time", "The little dog ran to the park and saw a big red ball."];

    public void Dispose()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }
}

[CollectionDefinition("analyzer")]
public sealed class AnalyzerCollection : ICollectionFixture<AnalyzerModels>;
