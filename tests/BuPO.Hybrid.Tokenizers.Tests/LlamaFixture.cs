using BuPO.Hybrid.Llama;
using BuPO.Hybrid.Tests.Support;

namespace BuPO.Hybrid.Tokenizers.Tests;

/// <summary>The tests that call into llama.cpp run in this collection (one at a time, one loaded stories260K vocabulary).</summary>
[CollectionDefinition(Name)]
public sealed class LlamaCollection : ICollectionFixture<LlamaFixture>
{
    public const string Name = "llama.cpp";
}

/// <summary>Initializes llama.cpp once and loads stories260K's vocabulary lazily (skips the test when the shared asset is absent).</summary>
public sealed class LlamaFixture : IDisposable
{
    private LlamaModel? _stories;
    private readonly object _gate = new();

    public LlamaFixture() => LlamaBackend.Initialize(minLevel: LlamaLogLevel.Warning);

    /// <summary>stories260K, vocabulary only.</summary>
    public LlamaModel Stories
    {
        get
        {
            var path = SharedAssets.RequireFile(SharedAssets.StoriesModel);
            lock (_gate) return _stories ??= LoadVocab(path);
        }
    }

    /// <summary>llama.cpp's vocabulary of a GGUF file (no weights).</summary>
    public static LlamaModel LoadVocab(string path) => LlamaModel.Load(path, new LlamaModelOptions { VocabOnly = true });

    public void Dispose() => _stories?.Dispose();
}
