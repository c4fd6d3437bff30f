using System.CommandLine;
using System.Text.Json.Nodes;
using BuPO.Hybrid.Bench.Sync;
using BuPO.Hybrid.Gguf;
using BuPO.Hybrid.Llama;
using BuPO.Hybrid.Model;
using BuPO.Hybrid.RL.Training;
using Spectre.Console;

namespace BuPO.Hybrid.Cli.Commands.Bench;

/// <summary>
/// <c>bupo-hybrid bench sync</c>: parses the options of <see cref="SyncBenchmark"/> (export, quantize and reload of the
/// trainer's weights per rollout type) and renders its result as a table and JSON.
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
            var keepFiles = parse.GetValue(keep);
            var result = SyncBenchmark.Run(model.Path, new SyncBenchmarkSettings
            {
                Types = types, Rounds = rounds, Intermediate = inter, Device = parse.GetValue(device)!, GpuLayers = layers, Threads = nThreads,
                OutDir = outFolder?.FullName, Keep = keepFiles,
            }, m => BenchCommon.Log(stderr, m));
            var dir = result.Directory;
            var trainerLoad = result.TrainerLoadSeconds;

            var table = new Table { Title = new TableTitle(Markup.Escape($"bench sync: {model.Label}, trainer on {dev}, {(rounds > 1 ? $"best of {rounds} rounds" : "1 round")}")) };
            table.AddColumns("type", "file MiB", "export s", "quantize s", "load s", "first decode s", "total s", "vs fastest");
            foreach (var c in table.Columns.Skip(1)) c.RightAligned();
            var rows = new JsonArray();
            foreach (var s in result.Types)
            {
                var q = s.Type;
                table.AddRow(q, BenchCommon.F(s.Bytes / 1048576.0, 2), BenchCommon.F(s.ExportSeconds, 3), s.QuantizeSeconds is { } x ? BenchCommon.F(x, 3) : "-",
                    BenchCommon.F(s.LoadSeconds, 3), BenchCommon.F(s.FirstDecodeSeconds, 3), BenchCommon.F(s.TotalSeconds, 3), BenchCommon.Ratio(result.VsFastest(s)));
                rows.Add(new JsonObject
                {
                    ["type"] = q,
                    ["file_bytes"] = s.Bytes,
                    ["export_seconds"] = BenchCommon.Num(s.ExportSeconds),
                    ["quantize_seconds"] = s.QuantizeSeconds is { } y ? BenchCommon.Num(y) : null,
                    ["load_seconds"] = BenchCommon.Num(s.LoadSeconds),
                    ["first_decode_seconds"] = BenchCommon.Num(s.FirstDecodeSeconds),
                    ["total_seconds"] = BenchCommon.Num(s.TotalSeconds),
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
}
