using System.Globalization;
using System.CommandLine;
using System.Text.Json;
using BuPO.Hybrid.Llama;
using Spectre.Console;
using BuPO.Hybrid.Bench.Models;
using BuPO.Hybrid.Bench.Rollouts;
using BuPO.Hybrid.Cli.Commands.Bench;
using BuPO.Hybrid.Rollout;

namespace BuPO.Hybrid.Cli.Commands;

/// <summary>
/// <c>bupo-hybrid bench SUBCOMMAND</c>: performance measurements. Registration point: add a factory to
/// <see cref="Subcommands"/> (e.g. <c>bench train</c>, <c>bench sync</c>, <c>bench analyze</c>, <c>bench tokenize</c>).
/// </summary>
public static class BenchCommand
{
    /// <summary>The subcommands of <c>bench</c>, in help order. Add yours here.</summary>
    public static readonly IReadOnlyList<Func<Command>> Subcommands =
    [
        CreateRollout,
        Bench.BenchTrainCommand.Create,
        Bench.BenchSyncCommand.Create,
        Bench.BenchAnalyzeCommand.Create,
        Bench.BenchTokenizeCommand.Create,
        Bench.BenchVerifyCommand.Create,
    ];

    public static Command Create()
    {
        var cmd = new Command("bench", "Performance benchmarks: rollout, train, sync, analyze, tokenize, verify (tables side by side; --json FILE for machine-readable results)");
        foreach (var make in Subcommands) cmd.Subcommands.Add(make());
        return cmd;
    }

    // ------------------------------------------------------------------ bench rollout

    public static Command CreateRollout()
    {
        var source = new BenchModelSource();
        source.RandomType.Aliases.Add("--type"); // the option's name here before the bench commands shared one model source
        var batch = new Option<string>("--batch") { Description = "Batch sizes (sequences decoding together), comma-separated", DefaultValueFactory = _ => "1,16,64,256" };
        var promptTokens = new Option<int>("--prompt-tokens") { Description = "Tokens per prompt (random ordinary tokens)", DefaultValueFactory = _ => 128 };
        var genTokens = new Option<int>("--gen-tokens") { Description = "Tokens generated per sequence", DefaultValueFactory = _ => 256 };
        var repeats = new Option<int>("--repeats") { Description = "Runs per engine and batch size, alternating; the fastest of each is reported", DefaultValueFactory = _ => 1 };
        var threads = new Option<int>("--threads") { Description = "Decode threads (0 = all processors)", DefaultValueFactory = _ => 0 };
        var samplingThreads = new Option<int>("--sampling-threads") { Description = "Rollout engine sampling threads (0 = all processors)", DefaultValueFactory = _ => 0 };
        var gpuLayers = new Option<int>("--gpu-layers") { Description = "Layers to offload to the GPU (-1 = all; needs a GPU build of llama.cpp)", DefaultValueFactory = _ => 0 };
        var kv = new Option<string>("--kv") { Description = "KV cache layout for both loops: streams (one per sequence) or unified", DefaultValueFactory = _ => "streams" };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the prompts and draws", DefaultValueFactory = _ => 1UL };
        var json = new Option<FileInfo?>("--json") { Description = "Also write the results as JSON to this file" };
        var libDir = new Option<string?>("--llama-lib-dir") { Description = $"Folder of the llama.cpp libraries (default: ${LlamaBackend.LibDirEnvironmentVariable}, then the bundled build)" };
        var cmd = new Command("rollout",
            "Generated tokens/s of a raw llama.cpp decode loop vs the rollout engine (log-probs and bookkeeping), per batch size, side by side")
        {
            batch, promptTokens, genTokens, repeats, threads, samplingThreads, gpuLayers, kv, seed, json, libDir,
        };
        source.AddTo(cmd);
        cmd.SetAction(parse =>
        {
            source.Validate(parse);
            var batches = CliConsole.ParseIntList("--batch", parse.GetValue(batch)!);
            foreach (var b in batches)
                if (b is < 1 or > RolloutEngine.MaxParallel) throw new BupoException($"--batch: {b} is outside [1, {RolloutEngine.MaxParallel}]");
            int pt = parse.GetValue(promptTokens), gt = parse.GetValue(genTokens), rep = parse.GetValue(repeats);
            if (pt < 1) throw new BupoException($"--prompt-tokens must be >= 1, got {pt}");
            if (gt < 1) throw new BupoException($"--gen-tokens must be >= 1, got {gt}");
            if (rep < 1) throw new BupoException($"--repeats must be >= 1, got {rep}");
            int th = parse.GetValue(threads), sth = parse.GetValue(samplingThreads), gl = parse.GetValue(gpuLayers);
            if (th < 0) throw new BupoException($"--threads must be >= 0, got {th}");
            if (sth < 0) throw new BupoException($"--sampling-threads must be >= 0, got {sth}");
            if (gl < -1) throw new BupoException($"--gpu-layers must be >= -1, got {gl}");
            var layout = parse.GetValue(kv)!.Trim().ToLowerInvariant();
            if (layout is not ("streams" or "unified")) throw new BupoException($"--kv must be streams or unified, got '{layout}'");
            var model = source.Resolve(parse, line => parse.InvocationConfiguration.Error.WriteLine(line));
            LlamaBackend.Initialize(parse.GetValue(libDir), minLevel: LlamaLogLevel.Error);
            var options = new RolloutBenchmarkOptions
            {
                BatchSizes = batches, PromptTokens = pt, GenTokens = gt, Repeats = rep, Threads = th, SamplingThreads = sth, GpuLayers = gl,
                UnifiedKvCache = layout == "unified", Seed = parse.GetValue(seed),
            };
            return RunRollout(model, options, parse.GetValue(json), parse.InvocationConfiguration.Output);
        });
        return cmd;
    }

    private static int RunRollout(BenchModel model, RolloutBenchmarkOptions options, FileInfo? json, TextWriter stdout)
    {
        var path = model.Path;
        var console = CliConsole.Create(stdout);
        string description, arch;
        int vocab;
        using (var m = LlamaModel.Load(path, new LlamaModelOptions { GpuLayers = options.GpuLayers }))
        {
            description = m.Description;
            arch = m.Architecture;
            vocab = m.VocabSize;
        }
        int threads = options.Threads == 0 ? Environment.ProcessorCount : options.Threads;
        console.WriteLine(model.Note);
        console.WriteLine($"       {arch}, {description}, vocabulary {vocab}");
        console.WriteLine($"prompts {options.PromptTokens} tokens, {options.GenTokens} generated per sequence (end of generation ignored), " +
                          $"{threads} decode thread(s), KV {(options.UnifiedKvCache == true ? "unified" : "one stream per sequence")}, " +
                          $"{options.Repeats} run(s) each, devices: {string.Join(", ", LlamaBackend.Devices.Select(d => d.Name))}");

        IReadOnlyList<RolloutBenchmarkRow> rows;
        if (console.Profile.Capabilities.Interactive)
        {
            IReadOnlyList<RolloutBenchmarkRow>? result = null;
            console.Status().Start("warm-up", s => result = RolloutBenchmark.Run(path, options, status: text => s.Status(text)));
            rows = result!;
        }
        else
        {
            rows = RolloutBenchmark.Run(path, options);
        }

        var table = new Table().AddColumns("batch", "generated", "raw llama.cpp tok/s", "engine tok/s", "engine/raw", "raw s (decode)", "engine s (decode, sample)");
        foreach (var r in rows)
            table.AddRow(r.Batch.ToString(CultureInfo.InvariantCulture), r.GeneratedTokens.ToString(CultureInfo.InvariantCulture), CliConsole.F(r.RawTokensPerSecond, "F1"), CliConsole.F(r.EngineTokensPerSecond, "F1"),
                CliConsole.F(r.Ratio, "F3"), $"{CliConsole.F(r.GeneratedTokens / r.RawTokensPerSecond, "F2")} ({CliConsole.F(r.RawDecodeSeconds, "F2")})",
                $"{CliConsole.F(r.GeneratedTokens / r.EngineTokensPerSecond, "F2")} ({CliConsole.F(r.EngineDecodeSeconds, "F2")}, {CliConsole.F(r.EngineSampleSeconds, "F2")})");
        console.Write(table);

        if (json != null)
        {
            var doc = new
            {
                model = path,
                random_shape = model.RandomShape,
                vocab = model.Vocab,
                architecture = arch,
                description,
                vocab_size = vocab,
                prompt_tokens = options.PromptTokens,
                gen_tokens = options.GenTokens,
                repeats = options.Repeats,
                threads,
                kv = options.UnifiedKvCache == true ? "unified" : "streams",
                devices = LlamaBackend.Devices.Select(d => d.Name).ToArray(),
                system_info = LlamaBackend.SystemInfo,
                rows = rows.Select(r => new
                {
                    batch = r.Batch,
                    generated_tokens = r.GeneratedTokens,
                    raw_tokens_per_second = r.RawTokensPerSecond,
                    engine_tokens_per_second = r.EngineTokensPerSecond,
                    ratio = r.Ratio,
                    raw_seconds = r.RawSeconds,
                    engine_seconds = r.EngineSeconds,
                    raw_decode_seconds = r.RawDecodeSeconds,
                    engine_decode_seconds = r.EngineDecodeSeconds,
                    engine_sample_seconds = r.EngineSampleSeconds,
                }),
            };
            BuPO.Hybrid.AtomicFile.WriteAllText(json.FullName, JsonSerializer.Serialize(doc, JsonFormat.Indented));
            console.WriteLine($"wrote {json.FullName}");
        }
        return 0;
    }
}
