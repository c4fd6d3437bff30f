using System.CommandLine;
using System.Text.Json.Nodes;
using BuPO.Hybrid.Analysis;
using BuPO.Hybrid.Bench.LensAnalysis;
using BuPO.Hybrid.Llama;
using BuPO.Hybrid.Model;
using Spectre.Console;
using static TorchSharp.torch;

namespace BuPO.Hybrid.Cli.Commands.Bench;

/// <summary>
/// <c>bupo-hybrid bench analyze</c>: parses the options of <see cref="AnalyzeBenchmark"/> (the all-block internal-policy
/// lens, torch engine vs llama.cpp engine) and renders its result as a table and JSON.
/// </summary>
public static class BenchAnalyzeCommand
{
    private static readonly string[] EngineNames = ["torch", "llama"];

    public static Command Create()
    {
        var source = new BenchModelSource();
        var engines = new Option<string>("--engines") { Description = "Engines to measure: torch, llama (comma list)", DefaultValueFactory = _ => "torch,llama" };
        var sequences = new Option<int>("--sequences") { Description = "Sequences analyzed", DefaultValueFactory = _ => 4 };
        var seq = new Option<int>("--seq") { Description = "Tokens per sequence", DefaultValueFactory = _ => 256 };
        var chunk = new Option<int>("--chunk-size") { Description = "Positions per unembedding chunk", DefaultValueFactory = _ => 1024 };
        var device = new Option<string>("--device") { Description = "Torch device of the lens (and of the torch engine's model): cpu, cuda, cuda:N", DefaultValueFactory = _ => "cpu" };
        var dtype = new Option<string>("--dtype") { Description = "Torch engine model type: f32 or bf16", DefaultValueFactory = _ => "f32" };
        BenchCommon.OneOf(dtype, "f32", "fp32", "float32", "bf16", "bfloat16");
        var llamaBatch = new Option<int>("--llama-batch") { Description = "Positions per llama.cpp decode in the llama engine", DefaultValueFactory = _ => 512 };
        var gpuLayers = new Option<int>("--gpu-layers") { Description = "Layers llama.cpp offloads (-1 = all; needs a GPU build of llama.cpp)", DefaultValueFactory = _ => -1 };
        var repeat = new Option<int>("--repeat") { Description = "Timed runs per engine (engines alternate); the table shows the best", DefaultValueFactory = _ => 1 };
        var seed = new Option<int>("--seed") { Description = "Seed of the random token ids", DefaultValueFactory = _ => 1 };
        var threads = BenchCommon.ThreadsOption("llama.cpp and TorchSharp");
        var libDir = new Option<string?>("--llama-lib-dir") { Description = $"Folder of the llama.cpp libraries (default: ${LlamaBackend.LibDirEnvironmentVariable}, then the bundled build)" };
        var json = BenchCommon.JsonOption();

        var cmd = new Command("analyze", "Tokens/s of the all-block internal-policy lens (analyze), torch engine vs llama.cpp engine");
        source.AddTo(cmd);
        foreach (var o in new Option[] { engines, sequences, seq, chunk, device, dtype, llamaBatch, gpuLayers, repeat, seed, threads, libDir, json }) cmd.Options.Add(o);
        cmd.SetAction(parse =>
        {
            var stdout = parse.InvocationConfiguration.Output;
            var stderr = parse.InvocationConfiguration.Error;
            var nSeq = BenchCommon.Positive("--sequences", parse.GetValue(sequences));
            var len = BenchCommon.Positive("--seq", parse.GetValue(seq));
            var chunkSize = BenchCommon.Positive("--chunk-size", parse.GetValue(chunk));
            var batch = BenchCommon.Positive("--llama-batch", parse.GetValue(llamaBatch));
            var rounds = BenchCommon.Positive("--repeat", parse.GetValue(repeat));
            var nThreads = BenchCommon.NonNegative("--threads", parse.GetValue(threads));
            var layers = parse.GetValue(gpuLayers);
            if (layers < -1) throw new BupoException($"--gpu-layers must be >= -1, got {layers}");
            var list = BenchCommon.List("--engines", parse.GetValue(engines)).Select(e =>
                EngineNames.Contains(e.ToLowerInvariant()) ? e.ToLowerInvariant() : throw new BupoException($"--engines: '{e}' is not one of {string.Join(", ", EngineNames)}"))
                .Distinct().ToArray();
            source.Validate(parse);
            var dev = ModelDevice.Parse(parse.GetValue(device));
            var type = ModelDevice.ParseDType(parse.GetValue(dtype));

            var console = CliConsole.Create(stdout);
            LlamaBackend.Initialize(parse.GetValue(libDir), minLevel: LlamaLogLevel.Error);
            if (nThreads > 0) TorchSharp.torch.set_num_threads(nThreads);
            var model = source.Resolve(parse, m => BenchCommon.Log(stderr, m));
            var ctxLength = AnalyzeBenchmark.ContextLength(model.Path);
            if (ctxLength > 0 && len > ctxLength) throw new BupoException($"--seq {len} exceeds the model's context of {ctxLength} tokens");

            var result = AnalyzeBenchmark.Run(model, new AnalyzeBenchmarkSettings
            {
                Engines = list.Select(e => e == "torch" ? AnalysisEngine.Torch : AnalysisEngine.Llama).ToArray(),
                Sequences = nSeq, Seq = len, ChunkSize = chunkSize, Device = parse.GetValue(device)!, DType = parse.GetValue(dtype)!,
                LlamaBatch = batch, GpuLayers = layers, Rounds = rounds, Seed = parse.GetValue(seed), Threads = nThreads,
            }, m => BenchCommon.Log(stderr, m));
            var tokens = result.Tokens;
            var lensRows = result.LensRowsPerToken;
            var table = new Table
            {
                Title = new TableTitle(Markup.Escape($"bench analyze: {model.Label}, {result.LayerCount} blocks, {nSeq} x {len} tokens, chunk {chunkSize}, lens on {dev}")),
            };
            table.AddColumns("engine", "states from", "seconds", "tokens/s", "lens rows/s", "vs torch");
            foreach (var c in table.Columns.Skip(2)) c.RightAligned();
            var rows = new JsonArray();
            foreach (var engine in result.Engines)
            {
                var e = AnalyzeBenchmark.Name(engine.Engine);
                var s = engine.Seconds;
                var from = e == "torch" ? $"TorchSharp model ({TypeName(type)}, {dev})" : $"llama.cpp graph ({(layers == 0 ? "CPU" : $"gpu-layers {layers}")})";
                var vs = result.SpeedupVsTorch(engine);
                table.AddRow(e, Markup.Escape(from), BenchCommon.F(s, 3), BenchCommon.F(result.TokensPerSecond(engine), 0), BenchCommon.F(result.LensRowsPerSecond(engine), 0), BenchCommon.Ratio(vs));
                rows.Add(new JsonObject
                {
                    ["engine"] = e,
                    ["states_from"] = from,
                    ["seconds"] = BenchCommon.Num(s),
                    ["tokens"] = tokens,
                    ["tokens_per_second"] = BenchCommon.Num(result.TokensPerSecond(engine), 1),
                    ["lens_rows_per_token"] = lensRows,
                    ["speedup_vs_torch"] = BenchCommon.Num(vs),
                });
            }
            console.Write(table);
            console.WriteLine($"lens rows per token: 5L + 2 = {lensRows} (embedding, per block the residual, attention and FFN outputs and inputs, final policy), each a [{result.VocabSize:N0}]-way softmax entropy; " +
                              $"best of {rounds} timed run(s) after a warm-up; model load not timed.");
            console.WriteLine("H100 anchor (PLATFORM_NOTES, PyTorch bf16, 28 layers, chunks of 1024): 9,713 tokens/s for the all-layer lens entropy.");
            console.WriteLine(model.Note);
            console.WriteLine(BenchCommon.MachineNote());
            if (parse.GetValue(json) is { } file)
            {
                var settings = new JsonObject
                {
                    ["sequences"] = nSeq, ["seq"] = len, ["chunk_size"] = chunkSize, ["device"] = dev.ToString(), ["dtype"] = TypeName(type),
                    ["llama_batch"] = batch, ["gpu_layers"] = layers, ["rounds"] = rounds, ["threads"] = nThreads, ["n_layer"] = result.LayerCount,
                };
                BenchCommon.WriteJson(file, BenchCommon.Document("analyze", model, settings, rows), console);
            }
            return 0;
        });
        return cmd;
    }

    private static string TypeName(ScalarType t) => t switch { ScalarType.BFloat16 => "bf16", ScalarType.Float64 => "f64", _ => "f32" };
}
