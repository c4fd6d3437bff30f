namespace BuPO.Hybrid.Bench.Training;

/// <summary>One variant of <see cref="TrainBenchmark.RunGroupShape"/>.</summary>
/// <param name="Mode">Full or bupo.</param>
/// <param name="SharedPrefix">The shared-prefix forward (each prompt once) rather than one sequence per response.</param>
/// <param name="UpdateMs">Wall time of each timed update, ms.</param>
/// <param name="TrainTokens">Tokens through the differentiable forward (the shared prefix counts each prompt once).</param>
/// <param name="ResponseTokens">Prompts x G x R.</param>
public sealed record GroupShapeRow(TrainStepMode Mode, bool SharedPrefix, double[] UpdateMs, long TrainTokens, long ResponseTokens)
{
    /// <summary>Mean ms per update.</summary>
    public double MeanMs => UpdateMs.Average();
    /// <summary>Fastest update, ms.</summary>
    public double MinMs => UpdateMs.Min();
    /// <summary>Response tokens per second of the mean update.</summary>
    public double ResponseTokensPerSecond => ResponseTokens / (MeanMs / 1000);
}

/// <summary>What <see cref="TrainBenchmark.RunGroupShape"/> measured: per mode the per-sequence row, then the shared-prefix row.</summary>
public sealed record GroupShapeResult(IReadOnlyList<GroupShapeRow> Rows)
{
    /// <summary>How many times faster <paramref name="row"/> is than the same mode's one-sequence-per-response path.</summary>
    public double SpeedupVsPerSequence(GroupShapeRow row) =>
        Rows.First(x => x.Mode == row.Mode && !x.SharedPrefix).MeanMs / row.MeanMs;
}
