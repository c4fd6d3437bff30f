using BuPO.Hybrid.RL.Rewards;

namespace BuPO.Hybrid.Bench.Verification;

/// <summary>How many of a dataset's gold answers the symbolic parser reads.</summary>
/// <param name="Dataset">The dataset's name.</param>
/// <param name="GoldAnswers">Items with a gold answer.</param>
/// <param name="Read">Gold answers <see cref="MathAnswerVerifier.ParsesAsMath"/> reads.</param>
/// <param name="Words">Of those, the ones read as text.</param>
public sealed record GoldParseResult(string Dataset, int GoldAnswers, int Read, int Words)
{
    /// <summary>Read / gold answers (NaN without gold answers).</summary>
    public double Share => GoldAnswers == 0 ? double.NaN : (double)Read / GoldAnswers;
}

/// <summary>One timed pass of one verifier mode over one set of responses.</summary>
/// <param name="Set">Which responses ("dataset golds", "peer cases").</param>
/// <param name="Mode">The verifier mode.</param>
/// <param name="Count">Responses verified.</param>
/// <param name="Seconds">Time of the pass (after a JIT warm-up).</param>
/// <param name="Accepted">Responses judged correct.</param>
public sealed record VerifyTiming(string Set, VerifierMode Mode, int Count, double Seconds, int Accepted)
{
    /// <summary>Responses per second.</summary>
    public double ResponsesPerSecond => Count / Seconds;
    /// <summary>Microseconds per response.</summary>
    public double MicrosecondsPerResponse => 1e6 * Seconds / Count;
}

/// <summary>What <see cref="VerifyBenchmark.Run"/> measured.</summary>
public sealed record VerifyBenchmarkResult(IReadOnlyList<GoldParseResult> GoldParses, IReadOnlyList<VerifyTiming> Timings);
