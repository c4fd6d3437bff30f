namespace BuPO.Hybrid.Bench.Training;

/// <summary>One mode's timed steps.</summary>
/// <param name="Mode">The step variant.</param>
/// <param name="StepMs">Wall time of each timed step, in ms.</param>
/// <param name="TrainedParameters">Parameters that got a gradient in the last step.</param>
/// <param name="LastLoss">The loss of the last step.</param>
public sealed record TrainModeResult(TrainStepMode Mode, double[] StepMs, long TrainedParameters, double LastLoss)
{
    /// <summary>Mean ms per timed step.</summary>
    public double MeanMs => StepMs.Average();
    /// <summary>Fastest timed step, ms.</summary>
    public double MinMs => StepMs.Min();
}

/// <summary>What <see cref="TrainBenchmark.Run"/> measured.</summary>
/// <param name="Modes">Each mode's steps, in the order of the settings.</param>
/// <param name="TokensPerStep">Batch x sequence tokens.</param>
public sealed record TrainBenchmarkResult(IReadOnlyList<TrainModeResult> Modes, long TokensPerStep)
{
    /// <summary>Tokens per second of a mode's mean step.</summary>
    public double TokensPerSecond(TrainModeResult mode) => TokensPerStep / (mode.MeanMs / 1000);

    /// <summary>How many times faster <paramref name="mode"/> is than <paramref name="baseline"/> (mean steps); NaN when the baseline did not run.</summary>
    public double Speedup(TrainModeResult mode, TrainStepMode baseline) =>
        Modes.FirstOrDefault(m => m.Mode == baseline) is { } b ? b.MeanMs / mode.MeanMs : double.NaN;
}
