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

    public void Dispose() => _stories?.Dispose();
}
