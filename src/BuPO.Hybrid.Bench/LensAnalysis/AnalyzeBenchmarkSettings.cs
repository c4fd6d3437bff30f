using BuPO.Hybrid.Analysis;

namespace BuPO.Hybrid.Bench.LensAnalysis;

/// <summary>Settings of <see cref="AnalyzeBenchmark.Run"/>: <see cref="Sequences"/> x <see cref="Seq"/> random token ids per engine.</summary>
public sealed record AnalyzeBenchmarkSettings
{
    /// <summary>Engines to measure, in order.</summary>
    public IReadOnlyList<AnalysisEngine> Engines { get; init; } = [AnalysisEngine.Torch, AnalysisEngine.Llama];
    /// <summary>Sequences analyzed.</summary>
    public int Sequences { get; init; } = 4;
    /// <summary>Tokens per sequence.</summary>
    public int Seq { get; init; } = 256;
    /// <summary>Positions per unembedding chunk.</summary>
    public int ChunkSize { get; init; } = 1024;
    /// <summary>Torch device of the lens and of the torch engine's model.</summary>
    public string Device { get; init; } = "cpu";
    /// <summary>Torch engine model type (f32 or bf16).</summary>
    public string DType { get; init; } = "f32";
    /// <summary>Positions per llama.cpp decode in the llama engine.</summary>
    public int LlamaBatch { get; init; } = 512;
    /// <summary>Layers llama.cpp offloads (-1 = all).</summary>
    public int GpuLayers { get; init; } = -1;
    /// <summary>Timed runs per engine (engines alternate); the result keeps the best.</summary>
    public int Rounds { get; init; } = 1;
    /// <summary>Seed of the random token ids.</summary>
    public int Seed { get; init; } = 1;
    /// <summary>llama.cpp threads (0 = all processors).</summary>
    public int Threads { get; init; }
}
