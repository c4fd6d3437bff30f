using System.CommandLine;
using System.Diagnostics;
using System.Text.Json.Nodes;
using BuPO.Hybrid.Gguf;
using BuPO.Hybrid.Llama;
using BuPO.Hybrid.Model;
using BuPO.Hybrid.RL.Training;
using Spectre.Console;
using static TorchSharp.torch;

namespace BuPO.Hybrid.Cli.Commands.Bench;

/// <summary>
/// <c>bupo-hybrid bench sync</c>: the trainer-to-sampler weight sync of every RL step, split into its parts: export of the
/// trainer's weights to GGUF (<see cref="ModelExporter"/>; F16/BF16/Q8_0 are encoded directly), quantization with
/// llama_model_quantize for the other types (an F16 export first, as <see cref="ModelExporter"/> does), and the reload in
/// llama.cpp (model load + context, then the first decode, which pays the mmap page-ins / GPU upload).
/// </summary>
public static class BenchSyncCommand
{
    public static Command Create()
    {
        var source = new BenchModelSource();
        var quant = new Option<string>("--quant") { Description = "Rollout weight types to sync to (comma list; F32, F16, BF16, Q8_0 direct, others via llama-quantize)", DefaultValueFactory = _ => "Q8_0,F16,Q4_K_M" };
        var repeat = new Option<int>("--repeat") { Description = "Rounds (all types in turn per round); the table shows each stage's best round", DefaultValueFactory = _ => 1 };
        var intermediate = new Option<string>("--intermediate") { Description = "Export type before llama-quantize: F16 or F32", DefaultValueFactory = _ => "F16" };
        BenchCommon.OneOf(intermediate, "F16", "F32");
        var device = new Option<string>("--device") { Description = "Torch device holding the trainer's weights: cpu, cuda, cuda:N", DefaultValueFactory = _ => "cpu" };
        var gpuLayers = new Option<int>("--gpu-layers") { Description = "Layers llama.cpp offloads on reload (-1 = all; needs a GPU build of llama.cpp)", DefaultValueFactory = _ => -1 };
        var outDir = new Option<DirectoryInfo?>("--out-dir") { Description = "Folder for the synced files (default: a temporary folder, removed afterwards)" };
        var keep = new Option<bool>("--keep") { Description = "Keep the synced GGUF files" };
        var threads = BenchCommon.ThreadsOption("llama.cpp quantize and decode");
        var libDir = new Option<string?>("--llama-lib-dir") { Description = $"Folder of the llama.cpp libraries (default: ${LlamaBackend.LibDirEnvironmentVariable}, then the bundled build)" };
        var json = BenchCommon.JsonOption();

        var cmd = new Command("sync", "Seconds to sync trainer weights to the llama.cpp sampler: export, quantize and reload, per rollout type");
        source.AddTo(cmd);
        foreach (var o in new Option[] { quant, repeat, intermediate, device, gpuLayers, outDir, keep, threads, libDir, json }) cmd.Options.Add(o);
        cmd.SetAction(parse =>
        {
            var stdout = parse.InvocationConfiguration.Output;
            var stderr = parse.InvocationConfiguration.Error;
            var rounds = BenchCommon.Positive("--repeat", parse.GetValue(repeat));
            var nThreads = BenchCommon.NonNegative("--threads", parse.GetValue(threads));
            var layers = parse.GetValue(gpuLayers);
            if (layers < -1) throw new BupoException($"--gpu-layers must be >= -1, got {layers}");
            var types = BenchCommon.List("--quant", parse.GetValue(quant)).Select(q =>
                WeightSync.TypeNames.FirstOrDefault(n => string.Equals(n, q, StringComparison.OrdinalIgnoreCase))
                ?? throw new BupoException($"--quant: unknown type '{q}'; one of: {string.Join(", ", WeightSync.TypeNames)}")).Distinct().ToArray();
            var inter = Enum.Parse<GgmlType>(parse.GetValue(intermediate)!, ignoreCase: true);
            source.Validate(parse);
            var dev = ModelDevice.Parse(parse.GetValue(device));
            var outFolder = parse.GetValue(outDir);
            if (outFolder is { Exists: false }) throw new BupoException($"--out-dir: folder not found: {outFolder.FullName}");

            var console = CliConsole.Create(stdout);
            LlamaBackend.Initialize(parse.GetValue(libDir), minLevel: LlamaLogLevel.Error);
            var model = source.Resolve(parse, m => BenchCommon.Log(stderr, m));
            var sw = Stopwatch.StartNew();
            using var net = TransformerModel.FromGguf(model.Path, dev);
            var trainerLoad = sw.Elapsed.TotalSeconds;

            var dir = outFolder?.FullName ?? Directory.CreateTempSubdirectory("bupo-bench-sync-").FullName;
            var keepFiles = parse.GetValue(keep);
            var best = types.ToDictionary(q => q, _ => new Stage());
            try
            {
                for (var round = 0; round < rounds; round++)
                    foreach (var q in types)
                    {
                        var s = SyncOnce(net, model.Path, dir, q, inter, nThreads, layers);
                        best[q].Take(s);
                        BenchCommon.Log(stderr, FormattableString.Invariant(
                            $"round {round + 1}/{rounds} {q}: export {s.Export:F3} s, quantize {(s.Quantize is { } x ? x.ToString("F3", System.Globalization.CultureInfo.InvariantCulture) : "-")} s, load {s.Load:F3} s, first decode {s.FirstDecode:F3} s"));
                        if (!keepFiles) TryDelete(s.File);
                    }
            }
            finally
            {
                if (outFolder is null && !keepFiles) TryDeleteDir(dir);
            }

            var table = new Table { Title = new TableTitle(Markup.Escape($"bench sync: {model.Label}, trainer on {dev}, {(rounds > 1 ? $"best of {rounds} rounds" : "1 round")}")) };
            table.AddColumns("type", "file MiB", "export s", "quantize s", "load s", "first decode s", "total s", "vs fastest");
            foreach (var c in table.Columns.Skip(1)) c.RightAligned();
            var fastest = best.Values.Min(s => s.Total);
            var rows = new JsonArray();
            foreach (var q in types)
            {
                var s = best[q];
                table.AddRow(q, BenchCommon.F(s.Bytes / 1048576.0, 2), BenchCommon.F(s.Export, 3), s.Quantize is { } x ? BenchCommon.F(x, 3) : "-",
                    BenchCommon.F(s.Load, 3), BenchCommon.F(s.FirstDecode, 3), BenchCommon.F(s.Total, 3), BenchCommon.Ratio(s.Total / fastest));
                rows.Add(new JsonObject
                {
                    ["type"] = q,
                    ["file_bytes"] = s.Bytes,
                    ["export_seconds"] = BenchCommon.Num(s.Export),
                    ["quantize_seconds"] = s.Quantize is { } y ? BenchCommon.Num(y) : null,
                    ["load_seconds"] = BenchCommon.Num(s.Load),
                    ["first_decode_seconds"] = BenchCommon.Num(s.FirstDecode),
                    ["total_seconds"] = BenchCommon.Num(s.Total),
                });
            }
            console.Write(table);
            console.WriteLine($"export: trainer weights -> GGUF ({string.Join(", ", ModelExporter.DirectTypes)} encoded directly; other types: an {inter} export, then llama_model_quantize); " +
                              "load: llama.cpp model load + context; first decode: one token (pays mmap page-ins / GPU upload).");
            console.WriteLine(FormattableString.Invariant($"trainer load from GGUF (not part of a sync): {trainerLoad:F3} s; synced files {(keepFiles ? $"kept in {dir}" : "deleted after each round")}"));
            console.WriteLine(model.Note);
            console.WriteLine(BenchCommon.MachineNote());
            if (parse.GetValue(json) is { } file)
            {
                var settings = new JsonObject
                {
                    ["types"] = new JsonArray(types.Select(q => (JsonNode?)q).ToArray()), ["rounds"] = rounds, ["intermediate"] = inter.ToString(),
                    ["device"] = dev.ToString(), ["gpu_layers"] = layers, ["threads"] = nThreads, ["llama_lib_dir"] = LlamaBackend.LibraryDirectory,
                    ["trainer_load_seconds"] = BenchCommon.Num(trainerLoad),
                };
                BenchCommon.WriteJson(file, BenchCommon.Document("sync", model, settings, rows), console);
            }
            return 0;
        });
        return cmd;
    }

    internal sealed record SyncTimes(string File, long Bytes, double Export, double? Quantize, double Load, double FirstDecode);

    /// <summary>The best (lowest) time of each stage over the rounds.</summary>
    private sealed class Stage
    {
        public long Bytes;
        public double Export = double.PositiveInfinity, Load = double.PositiveInfinity, FirstDecode = double.PositiveInfinity;
        public double? Quantize;
        public double Total => Export + (Quantize ?? 0) + Load + FirstDecode;

        public void Take(SyncTimes s)
        {
            Bytes = s.Bytes;
            Export = Math.Min(Export, s.Export);
            Load = Math.Min(Load, s.Load);
            FirstDecode = Math.Min(FirstDecode, s.FirstDecode);
            if (s.Quantize is { } q) Quantize = Math.Min(Quantize ?? double.PositiveInfinity, q);
        }
    }

    /// <summary>One sync to <paramref name="type"/>: export (+ quantize), then load, create a context and decode one token.</summary>
    /// <summary>One sync as training runs it (<see cref="WeightSync.Run"/>), reloading into a fresh llama.cpp model and context and decoding one token.</summary>
    internal static SyncTimes SyncOnce(TransformerModel net, string sourceGguf, string dir, string type, GgmlType intermediate, int threads, int gpuLayers)
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
        return new SyncTimes(output, times.Bytes, times.ExportSeconds, times.QuantizeSeconds, load, first);
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
