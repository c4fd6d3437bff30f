namespace BuPO.Hybrid.Bench.Sync;

/// <summary>One sync to one type: seconds of each stage (the best round of each, over the rounds).</summary>
/// <param name="Type">The rollout weight type.</param>
/// <param name="Bytes">Size of the synced file.</param>
/// <param name="ExportSeconds">Trainer weights to GGUF.</param>
/// <param name="QuantizeSeconds">llama_model_quantize, for the types not encoded directly; else null.</param>
/// <param name="LoadSeconds">llama.cpp model load + context.</param>
/// <param name="FirstDecodeSeconds">One token (pays mmap page-ins / GPU upload).</param>
public sealed record SyncTypeResult(string Type, long Bytes, double ExportSeconds, double? QuantizeSeconds, double LoadSeconds, double FirstDecodeSeconds)
{
    /// <summary>All stages together.</summary>
    public double TotalSeconds => ExportSeconds + (QuantizeSeconds ?? 0) + LoadSeconds + FirstDecodeSeconds;

    /// <summary>The lower time of each stage of this and <paramref name="other"/> (same type).</summary>
    public SyncTypeResult Best(SyncTypeResult other) => this with
    {
        Bytes = other.Bytes,
        ExportSeconds = Math.Min(ExportSeconds, other.ExportSeconds),
        QuantizeSeconds = QuantizeSeconds is { } q && other.QuantizeSeconds is { } o ? Math.Min(q, o) : QuantizeSeconds ?? other.QuantizeSeconds,
        LoadSeconds = Math.Min(LoadSeconds, other.LoadSeconds),
        FirstDecodeSeconds = Math.Min(FirstDecodeSeconds, other.FirstDecodeSeconds),
    };
}

/// <summary>What <see cref="SyncBenchmark.Run"/> measured.</summary>
/// <param name="Types">Per type, in the settings' order.</param>
/// <param name="TrainerLoadSeconds">Loading the trainer's model from the GGUF (not part of a sync).</param>
/// <param name="Device">The torch device the trainer's weights were on.</param>
/// <param name="Directory">Where the synced files were written.</param>
public sealed record SyncBenchmarkResult(IReadOnlyList<SyncTypeResult> Types, double TrainerLoadSeconds, string Device, string Directory)
{
    /// <summary>A type's total over the fastest type's.</summary>
    public double VsFastest(SyncTypeResult type) => type.TotalSeconds / Types.Min(t => t.TotalSeconds);
}
