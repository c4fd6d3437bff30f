using BuPO.Hybrid.Data;

namespace BuPO.Hybrid.Bench.Verification;

/// <summary>Settings of <see cref="VerifyBenchmark.Run"/>.</summary>
public sealed record VerifyBenchmarkSettings
{
    /// <summary>Datasets whose gold answers are parsed and boxed into responses (DeepMath-5k and MATH500 in <c>bench verify</c>).</summary>
    public required IReadOnlyList<(string Name, IReadOnlyList<PromptItem> Items)> Datasets { get; init; }
    /// <summary>Responses to verify per mode and set.</summary>
    public int Responses { get; init; } = 10_000;
    /// <summary>The peer graders' cases (JSONL of response, gold), cycled as a second set; null or missing = none.</summary>
    public string? PeerCasesFile { get; init; }
}
