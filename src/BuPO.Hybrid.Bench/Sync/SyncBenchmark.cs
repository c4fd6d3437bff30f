using System.Diagnostics;
using System.Globalization;
using BuPO.Hybrid.Gguf;
using BuPO.Hybrid.Llama;
using BuPO.Hybrid.Model;
using BuPO.Hybrid.RL.Training;

namespace BuPO.Hybrid.Bench.Sync;

/// <summary>
/// The trainer-to-sampler weight sync of every RL step, split into its parts: export of the trainer's weights to GGUF
/// (<see cref="ModelExporter"/>; F16/BF16/Q8_0 are encoded directly), quantization with llama_model_quantize for the other
/// types (an intermediate export first, as <see cref="ModelExporter"/> does), and the reload in llama.cpp (model load +
/// context, then the first decode, which pays the mmap page-ins / GPU upload). Needs an initialized <see cref="LlamaBackend"/>.
/// </summary>
public static class SyncBenchmark
{
    /// <summary>Loads <paramref name="ggufPath"/> into the trainer, then syncs it to every type, round after round.</summary>
    public static SyncBenchmarkResult Run(string ggufPath, SyncBenchmarkSettings settings, Action<string>? log = null)
    {
        ArgumentNullException.ThrowIfNull(settings);
        log ??= _ => { };
        var dev = ModelDevice.Parse(settings.Device);
        var sw = Stopwatch.StartNew();
        using var net = TransformerModel.FromGguf(ggufPath, dev);
        var trainerLoad = sw.Elapsed.TotalSeconds;

        var dir = settings.OutDir ?? Directory.CreateTempSubdirectory("bupo-bench-sync-").FullName;
        var best = new Dictionary<string, SyncTypeResult>();
        try
        {
            for (var round = 0; round < settings.Rounds; round++)
                foreach (var q in settings.Types)
                {
                    var (file, s) = SyncOnce(net, ggufPath, dir, q, settings.Intermediate, settings.Threads, settings.GpuLayers);
                    best[q] = best.TryGetValue(q, out var b) ? b.Best(s) : s;
                    log(FormattableString.Invariant(
                        $"round {round + 1}/{settings.Rounds} {q}: export {s.ExportSeconds:F3} s, quantize {(s.QuantizeSeconds is { } x ? x.ToString("F3", CultureInfo.InvariantCulture) : "-")} s, load {s.LoadSeconds:F3} s, first decode {s.FirstDecodeSeconds:F3} s"));
                    if (!settings.Keep) TryDelete(file);
                }
        }
        finally
        {
            if (settings.OutDir is null && !settings.Keep) TryDeleteDir(dir);
        }
        return new SyncBenchmarkResult(settings.Types.Select(q => best[q]).ToArray(), trainerLoad, dev.ToString(), dir);
    }

    /// <summary>One sync as training runs it (<see cref="WeightSync.Run"/>), reloading into a fresh llama.cpp model and context and decoding one token.</summary>
    internal static (string File, SyncTypeResult Times) SyncOnce(TransformerModel net, string sourceGguf, string dir, string type, GgmlType intermediate, int threads, int gpuLayers)
    {
        var output = Path.Combine(dir, $"sync-{type}.gguf");
        double load = 0, first = 0;
        var times = WeightSync.Run(net, sourceGguf, output, type, path =>
        {
            // Timed inside: the reload's own time would also count freeing this model and context at the end.
            var sw = Stopwatch.StartNew();
            using var llm = LlamaModel.Load(path, new LlamaModelOptions { GpuLayers = gpuLayers });
            using var ctx = LlamaContext.Create(llm, new LlamaContextOptions { ContextSize = 256, BatchSize = 16, UBatchSize = 16, Threads = threads });
            load = sw.Elapsed.TotalSeconds;
            sw.Restart();
            using (var batch = new LlamaBatch(1))
            {
                batch.Add(0, 0, 0, wantLogits: true);
                ctx.Decode(batch);
                _ = ctx.GetLogits(0)[0];
            }
            first = sw.Elapsed.TotalSeconds;
        }, intermediate, threads);
        return (output, new SyncTypeResult(type, times.Bytes, times.ExportSeconds, times.QuantizeSeconds, load, first));
    }

    private static void TryDelete(string path)
    {
        try { if (File.Exists(path)) File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    private static void TryDeleteDir(string path)
    {
        try { if (Directory.Exists(path)) Directory.Delete(path, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
