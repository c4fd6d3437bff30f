using BuPO.Hybrid.Gguf;
using BuPO.Hybrid.Llama;
using BuPO.Hybrid.Tests.Support;

namespace BuPO.Hybrid.Rollout.Tests;

/// <summary>Every test that runs llama.cpp is in this collection: one at a time (2-core machines), one backend init.</summary>
[CollectionDefinition(Name)]
public sealed class RolloutCollection : ICollectionFixture<RolloutFixture>
{
    public const string Name = "rollout (llama.cpp)";
}

public sealed class RolloutFixture : IDisposable
{
    private readonly object _gate = new();
    private string? _tinyLlama;
    private string? _storiesShaped;
    private string? _largeVocabQwenTiny;
    private string? _qwenTiny;

    public RolloutFixture()
    {
        LlamaBackend.Initialize(log: (level, line) => Log.Add($"{level}: {line}"), minLevel: LlamaLogLevel.Warning);
        Dir = Path.Combine(Path.GetTempPath(), $"bupo-rollout-tests-{Guid.NewGuid():N}");
        Directory.CreateDirectory(Dir);
    }

    public System.Collections.Concurrent.ConcurrentBag<string> Log { get; } = [];

    /// <summary>Scratch folder, deleted at the end.</summary>
    public string Dir { get; }

    /// <summary>stories260K (skipped when ../shared is absent).</summary>
    public string Stories => SharedAssets.RequireFile(SharedAssets.StoriesModel);

    /// <summary>
    /// A random model of stories260K's shape with the generated 512-token SentencePiece vocabulary
    /// (<see cref="RandomTestModels.StoriesShape"/>): always available, for what any model shows.
    /// </summary>
    public string StoriesShaped
    {
        get { lock (_gate) return _storiesShaped ??= RandomTestModels.StoriesShaped(Dir); }
    }

    /// <summary>A random llama-tiny with the generated 512-token vocabulary: always available.</summary>
    public string TinyLlama
    {
        get
        {
            lock (_gate)
                return _tinyLlama ??= RandomTestModels.Write(Dir, RandomModelSpec.Named("llama-tiny"), seed: 1);
        }
    }

    /// <summary>A random qwen3-tiny with a generated SentencePiece vocabulary as large as Qwen2's (151,936 tokens): always available.</summary>
    public string LargeVocabQwenTiny
    {
        get
        {
            lock (_gate)
                return _largeVocabQwenTiny ??= RandomTestModels.Write(Dir, RandomModelSpec.Named("qwen3-tiny"), vocabGguf: RandomTestModels.LargeSpmVocab(Dir));
        }
    }

    /// <summary>A random qwen3-tiny with the real Qwen2 vocabulary (151k tokens; skipped when ../shared is absent).</summary>
    public string QwenTiny
    {
        get
        {
            var vocab = SharedAssets.RequireFile(SharedAssets.Qwen2Vocab);
            lock (_gate) return _qwenTiny ??= RandomTestModels.Write(Dir, RandomModelSpec.Named("qwen3-tiny"), seed: 1, vocabGguf: vocab);
        }
    }

    public void Dispose()
    {
        try { Directory.Delete(Dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
