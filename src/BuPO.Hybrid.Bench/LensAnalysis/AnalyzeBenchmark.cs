using System.Diagnostics;
using BuPO.Hybrid.Analysis;
using BuPO.Hybrid.Bench.Models;
using BuPO.Hybrid.Gguf;
using BuPO.Hybrid.Model;

namespace BuPO.Hybrid.Bench.LensAnalysis;

/// <summary>
/// Tokens/s of the full internal-policy lens over every block (what <c>analyze</c> does: per position the embedding, each
/// block's residual, attention and FFN outputs and inputs, and the final policy: 5L + 2 unembedding rows), with the states
/// from the TorchSharp model (torch engine) and from llama.cpp's graph (llama engine). Inputs are random token ids (no
/// tokenization); the time runs from the analyzer's first progress report (model loaded) to its last, after an untimed
/// warm-up run of each engine. Needs an initialized <see cref="Llama.LlamaBackend"/>.
/// </summary>
public static class AnalyzeBenchmark
{
    /// <summary>The model's context length from its GGUF metadata (0 when absent).</summary>
    public static int ContextLength(string ggufPath)
    {
        var arch = TransformerConfig.FromGguf(ggufPath).Architecture;
        using var f = GgufFile.Open(ggufPath);
        return (int)(f.GetInt($"{arch}.context_length") ?? 0);
    }

    /// <summary>Warms up every engine, then times <see cref="AnalyzeBenchmarkSettings.Rounds"/> runs of each, alternating.</summary>
    public static AnalyzeBenchmarkResult Run(BenchModel model, AnalyzeBenchmarkSettings settings, Action<string>? log = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(settings);
        var ggufPath = model.Path;
        log ??= _ => { };
        var config = TransformerConfig.FromGguf(ggufPath);
        int nSeq = settings.Sequences, len = settings.Seq;
        var gen = new Random(settings.Seed);
        var seqs = Enumerable.Range(0, nSeq).Select(_ => new AnalysisSequence(Enumerable.Range(0, len).Select(_ => gen.Next(config.VocabSize)).ToArray(), 1)).ToArray();
        var warm = new[] { new AnalysisSequence(seqs[0].Tokens[..Math.Min(16, len)], 1) };
        var engines = settings.Engines.Distinct().ToArray();

        TransformerModel? torchModel = null;
        try
        {
            if (engines.Contains(AnalysisEngine.Torch))
            {
                var dev = ModelDevice.Parse(settings.Device);
                var type = ModelDevice.ParseDType(settings.DType);
                log($"loading {model.Label} into TorchSharp ({type}, {dev})");
                torchModel = TransformerModel.FromGguf(ggufPath, dev, type);
            }
            AnalyzeOptions Options(AnalysisEngine engine) => new()
            {
                ModelPath = ggufPath,
                Model = engine == AnalysisEngine.Torch ? torchModel : null,
                Engine = engine,
                Device = settings.Device,
                ChunkSize = settings.ChunkSize,
                LlamaBatchSize = settings.LlamaBatch,
                Threads = settings.Threads,
                GpuLayers = settings.GpuLayers,
                ContextSize = Math.Max(len, 16),
            };
            var best = engines.ToDictionary(e => e, _ => double.PositiveInfinity);
            foreach (var e in engines)
            {
                log($"warm-up: {Name(e)} engine");
                InternalEntropyAnalyzer.Analyze(Options(e), warm);
            }
            for (var r = 0; r < settings.Rounds; r++)
                foreach (var e in engines)
                {
                    var timer = new AnalyzeTimer();
                    InternalEntropyAnalyzer.Analyze(Options(e), seqs, timer);
                    best[e] = Math.Min(best[e], timer.Seconds);
                    log(FormattableString.Invariant($"round {r + 1}/{settings.Rounds} {Name(e)}: {timer.Seconds:F3} s ({(long)nSeq * len / timer.Seconds:F0} tokens/s)"));
                }
            return new AnalyzeBenchmarkResult(engines.Select(e => new AnalyzeEngineResult(e, best[e])).ToArray(), (long)nSeq * len, config.LayerCount, config.VocabSize);
        }
        finally
        {
            torchModel?.Dispose();
        }
    }

    /// <summary>An engine's name in options, logs and JSON ("torch", "llama").</summary>
    public static string Name(AnalysisEngine engine) => engine.ToString().ToLowerInvariant();

    /// <summary>Seconds from the analyzer's first "analyze" report (models loaded) to its last.</summary>
    private sealed class AnalyzeTimer : IProgress<AnalyzeProgress>
    {
        private readonly Stopwatch _watch = new();
        public double Seconds { get; private set; }

        public void Report(AnalyzeProgress value)
        {
            if (value.Stage != "analyze") return;
            if (value.Done == 0) _watch.Restart();
            Seconds = _watch.Elapsed.TotalSeconds;
        }
    }
}
