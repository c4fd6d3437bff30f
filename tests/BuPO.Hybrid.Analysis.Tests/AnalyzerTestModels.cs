using BuPO.Hybrid.Gguf;
using BuPO.Hybrid.Llama;
using BuPO.Hybrid.Model;
using BuPO.Hybrid.Tests.Support;
using TorchSharp;

namespace BuPO.Hybrid.Analysis.Tests;

/// <summary>
/// The test models: stories260K (llama, needs ../shared); tiny random llama, qwen2 (tied, Q/K/V biases) and qwen3 (own
/// output.weight, Q/K norms, head_dim != n_embd/n_head) GGUFs with the generated 512-token SentencePiece vocabulary
/// (<see cref="RandomTestModels.SpmVocab"/>: runs everywhere); and "qwen3-qwen2vocab", the qwen3 with the real Qwen2
/// tokenizer (151k tokens; needs ../shared). Written once per test run.
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

    public static IReadOnlyList<string> Names { get; } = ["stories", "llama", "qwen2", "qwen3", "qwen3-qwen2vocab"];

    /// <summary>The GGUF of a test model (skips when ../shared is absent).</summary>
    public string Path(string name)
    {
        if (name == "stories") return SharedAssets.RequireFile(SharedAssets.StoriesModel);
        var qwen2Vocab = name == "qwen3-qwen2vocab";
        var shape = qwen2Vocab ? "qwen3" : name;
        var vocab = qwen2Vocab ? SharedAssets.RequireFile(SharedAssets.Qwen2Vocab) : null;
        lock (_gate)
        {
            if (_paths.TryGetValue(name, out var p)) return p;
            vocab ??= RandomTestModels.SpmVocab(_dir);
            p = System.IO.Path.Combine(_dir, $"random-{name}.gguf");
            var (tied, headDim) = shape switch { "qwen2" => (true, (int?)null), "qwen3" => (false, (int?)32), _ => (false, (int?)null) };
            var spec = RandomModelSpec.Named($"{shape}-tiny") with { Layers = 3, HeadDim = headDim, TiedEmbeddings = tied, WeightStd = 0.125f, NormNoise = 0.2f, Seed = 3 };
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
