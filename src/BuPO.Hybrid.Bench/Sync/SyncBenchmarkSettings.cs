using BuPO.Hybrid.Gguf;

namespace BuPO.Hybrid.Bench.Sync;

/// <summary>Settings of <see cref="SyncBenchmark.Run"/>.</summary>
public sealed record SyncBenchmarkSettings
{
    /// <summary>Rollout weight types to sync to (names of <see cref="RL.Training.WeightSync.TypeNames"/>), all in turn per round.</summary>
    public IReadOnlyList<string> Types { get; init; } = ["Q8_0", "F16", "Q4_K_M"];
    /// <summary>Rounds; the result keeps each stage's best round.</summary>
    public int Rounds { get; init; } = 1;
    /// <summary>Export type before llama-quantize (F16 or F32).</summary>
    public GgmlType Intermediate { get; init; } = GgmlType.F16;
    /// <summary>Torch device holding the trainer's weights.</summary>
    public string Device { get; init; } = "cpu";
    /// <summary>Layers llama.cpp offloads on reload (-1 = all).</summary>
    public int GpuLayers { get; init; } = -1;
    /// <summary>llama.cpp quantize and decode threads (0 = all processors).</summary>
    public int Threads { get; init; }
    /// <summary>Folder for the synced files; null = a temporary folder, removed afterwards.</summary>
    public string? OutDir { get; init; }
    /// <summary>Keep the synced GGUF files.</summary>
    public bool Keep { get; init; }
}
