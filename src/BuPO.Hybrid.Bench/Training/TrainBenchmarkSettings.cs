namespace BuPO.Hybrid.Bench.Training;

/// <summary>Settings of <see cref="TrainBenchmark.Run"/>: one step of each mode on <see cref="Batch"/> x <see cref="Seq"/> random tokens.</summary>
public sealed record TrainBenchmarkSettings
{
    /// <summary>The step variants, run in this order.</summary>
    public IReadOnlyList<TrainStepMode> Modes { get; init; } = [TrainStepMode.Full, TrainStepMode.Reference, TrainStepMode.Bupo];
    /// <summary>Sequences per step.</summary>
    public int Batch { get; init; } = 2;
    /// <summary>Tokens per sequence.</summary>
    public int Seq { get; init; } = 128;
    /// <summary>Block k of the BuPO steps, 0-based.</summary>
    public int Layer { get; init; }
    /// <summary>Untimed steps per mode first.</summary>
    public int Warmup { get; init; } = 1;
    /// <summary>Timed steps per mode.</summary>
    public int Steps { get; init; } = 3;
    /// <summary>Positions per chunk of the chunked policy head.</summary>
    public int ChunkSize { get; init; } = 1024;
    /// <summary>AdamW learning rate.</summary>
    public double LearningRate { get; init; } = 1e-6;
    /// <summary>Gradient checkpointing in the full and bupo steps.</summary>
    public bool Checkpointing { get; init; }
    /// <summary>Seed of the random tokens.</summary>
    public int Seed { get; init; } = 1;
    /// <summary>One mode after the other (one optimizer state at a time) instead of interleaved.</summary>
    public bool Sequential { get; init; }
    /// <summary>TorchSharp's optim.AdamW and clip_grad_norm_ instead of the trainer's AdamW.</summary>
    public bool TorchOptimizer { get; init; }
}
