using BuPO.Hybrid.Analysis;

namespace BuPO.Hybrid.Bench.LensAnalysis;

/// <summary>One engine's best timed run.</summary>
/// <param name="Engine">Where the states came from.</param>
/// <param name="Seconds">From the analyzer's first progress report (models loaded) to its last.</param>
public sealed record AnalyzeEngineResult(AnalysisEngine Engine, double Seconds);

/// <summary>What <see cref="AnalyzeBenchmark.Run"/> measured.</summary>
/// <param name="Engines">Per engine, in the settings' order.</param>
/// <param name="Tokens">Sequences x tokens per sequence, per run.</param>
/// <param name="LayerCount">Blocks of the model.</param>
/// <param name="VocabSize">The model's vocabulary: each lens row is a softmax over it.</param>
public sealed record AnalyzeBenchmarkResult(IReadOnlyList<AnalyzeEngineResult> Engines, long Tokens, int LayerCount, int VocabSize)
{
    /// <summary>Lens rows per token: 5L + 2 (embedding, per block the residual, attention and FFN outputs and inputs, final policy).</summary>
    public int LensRowsPerToken => 5 * LayerCount + 2;

    /// <summary>Tokens per second of an engine.</summary>
    public double TokensPerSecond(AnalyzeEngineResult engine) => Tokens / engine.Seconds;

    /// <summary>Lens rows per second of an engine.</summary>
    public double LensRowsPerSecond(AnalyzeEngineResult engine) => Tokens * LensRowsPerToken / engine.Seconds;

    /// <summary>The torch engine's seconds over this engine's; NaN without a torch run.</summary>
    public double SpeedupVsTorch(AnalyzeEngineResult engine) =>
        (Engines.FirstOrDefault(e => e.Engine == AnalysisEngine.Torch)?.Seconds ?? double.NaN) / engine.Seconds;
}
