using BuPO.Hybrid.Gguf;

namespace BuPO.Hybrid.Bench.Models;

/// <summary>
/// Which model a benchmark runs on: exactly one of <see cref="ModelPath"/> (a GGUF file) or <see cref="RandomShape"/> (a
/// random-weight model of a named shape, <see cref="RandomModelSpec.Named"/>, written once into <see cref="CacheDir"/>).
/// </summary>
public sealed record BenchModelSettings
{
    /// <summary>A GGUF model file.</summary>
    public string? ModelPath { get; init; }
    /// <summary>A named random shape (qwen3-0.6b, qwen3-tiny, ...).</summary>
    public string? RandomShape { get; init; }
    /// <summary>Tokenizer of a random model: a vocabulary GGUF, or "generated"; null = ../shared's Qwen2 vocab when present, else generated.</summary>
    public string? Vocab { get; init; }
    /// <summary>Type of the 2-D weights of a random model.</summary>
    public GgmlType RandomType { get; init; } = GgmlType.F16;
    /// <summary>Blocks of a random model; null = the named shape's.</summary>
    public int? RandomLayers { get; init; }
    /// <summary>Folder for random models; null = <see cref="BenchModelResolver.DefaultCacheDir"/>.</summary>
    public string? CacheDir { get; init; }
}
