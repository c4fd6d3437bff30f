namespace BuPO.Hybrid.Bench.Training;

/// <summary>Settings of <see cref="TrainBenchmark.RunGroupShape"/>: <see cref="Prompts"/> prompts x <see cref="Group"/> responses.</summary>
public sealed record GroupShapeSettings
{
    /// <summary>The step variants (full and/or bupo; the trainer has no reference-style step).</summary>
    public IReadOnlyList<TrainStepMode> Modes { get; init; } = [TrainStepMode.Full, TrainStepMode.Bupo];
    /// <summary>Prompts per update.</summary>
    public int Prompts { get; init; } = 2;
    /// <summary>Responses per prompt G.</summary>
    public int Group { get; init; } = 8;
    /// <summary>Prompt tokens P.</summary>
    public int PromptTokens { get; init; } = 90;
    /// <summary>Response tokens R.</summary>
    public int ResponseTokens { get; init; } = 22;
    /// <summary>Block k of the bupo updates.</summary>
    public int Layer { get; init; }
    /// <summary>Untimed updates first.</summary>
    public int Warmup { get; init; } = 1;
    /// <summary>Timed updates per variant.</summary>
    public int Steps { get; init; } = 3;
    /// <summary>AdamW learning rate.</summary>
    public double LearningRate { get; init; } = 1e-6;
    /// <summary>Gradient checkpointing.</summary>
    public bool Checkpointing { get; init; }
    /// <summary>Seed of the random tokens and the trainer.</summary>
    public int Seed { get; init; } = 1;
}
