using System.CommandLine;
using System.Text.Json.Nodes;
using BuPO.Hybrid.Bench;
using BuPO.Hybrid.Bench.Models;
using BuPO.Hybrid.Bench.Training;
using BuPO.Hybrid.Model;
using Spectre.Console;
using TorchSharp;
using static TorchSharp.torch;

namespace BuPO.Hybrid.Cli.Commands.Bench;

/// <summary>
/// <c>bupo-hybrid bench train</c>: parses the options of <see cref="TrainBenchmark"/> (full policy vs a BuPO layer-k step,
/// reference style vs only blocks 0..k; or with --group the trainer's real update in the RL shape) and renders its result
/// as a table beside PLATFORM_NOTES' H100 anchors.
/// </summary>
public static class BenchTrainCommand
{
    public static Command Create()
    {
        var source = new BenchModelSource();
        var batch = new Option<int?>("--batch") { Description = "Sequences per step (default 8 on CUDA, 2 on the CPU)" };
        var seq = new Option<int?>("--seq") { Description = "Tokens per sequence (default 1024 on CUDA, 128 on the CPU)" };
        var layer = new Option<int?>("--layer") { Description = "Block k of the BuPO steps, 0-based (default 5, or (L-1)/2 for models with fewer than 6 blocks)" };
        var steps = new Option<int>("--steps") { Description = "Timed steps per mode", DefaultValueFactory = _ => 3 };
        var warmup = new Option<int>("--warmup") { Description = "Untimed steps per mode first", DefaultValueFactory = _ => 1 };
        var modes = new Option<string>("--modes") { Description = "Step variants to run: full, reference, bupo (comma list)", DefaultValueFactory = _ => "full,reference,bupo" };
        var device = new Option<string>("--device") { Description = "Torch device: cpu, cuda, cuda:N", DefaultValueFactory = _ => "cpu" };
        var dtype = new Option<string>("--dtype") { Description = "Trainer precision, as train --dtype: f32 (float32 weights and AdamW state), bf16 (mixed: float32 masters and AdamW state, bfloat16 forward/backward, float32 log-probs) or bf16-pure (bfloat16 weights and AdamW state)", DefaultValueFactory = _ => "f32" };
        BenchCommon.OneOf(dtype, "f32", "fp32", "float32", "bf16", "bfloat16", "bf16-pure", "bfloat16-pure");
        var sequential = new Option<bool>("--sequential") { Description = "Run the modes one after the other (one optimizer state in memory at a time) instead of interleaved" };
        var optimizer = new Option<string>("--optimizer") { Description = "trainer: the trainer's AdamW and grad-norm clip (as train); torch: TorchSharp's optim.AdamW and clip_grad_norm_", DefaultValueFactory = _ => "trainer" };
        BenchCommon.OneOf(optimizer, "trainer", "torch");
        var checkpointing = new Option<bool>("--checkpointing") { Description = "Gradient checkpointing in the full and bupo steps (recompute each block in backward)" };
        var chunk = new Option<int>("--chunk-size") { Description = "Positions per chunk of the chunked policy head (full and bupo steps)", DefaultValueFactory = _ => 1024 };
        var lr = new Option<double>("--lr") { Description = "AdamW learning rate (weight decay 0.01, betas 0.9/0.999, grad-norm clip 1.0)", DefaultValueFactory = _ => 1e-6 };
        var seed = new Option<int>("--seed") { Description = "Seed of the random tokens and advantages", DefaultValueFactory = _ => 1 };
        var threads = BenchCommon.ThreadsOption("TorchSharp");
        var json = BenchCommon.JsonOption();
        var group = new Option<int?>("--group") { Description = "RL shape: responses per prompt G. Times the trainer's real update (GrpoTrainer.Update: old log-probs, then forward + backward + AdamW) on --batch prompts, shared-prefix path vs one sequence per response" };
        var promptTokens = new Option<int>("--prompt-tokens") { Description = "RL shape: prompt tokens P (with --group)", DefaultValueFactory = _ => 90 };
        var responseTokens = new Option<int>("--response-tokens") { Description = "RL shape: response tokens R (with --group)", DefaultValueFactory = _ => 22 };

        var cmd = new Command("train", "Trainer tokens/s of forward + backward + AdamW: full policy (GRPO) vs a BuPO layer-k step, reference style vs only blocks 0..k");
        source.AddTo(cmd);
        foreach (var o in new Option[] { batch, seq, layer, steps, warmup, modes, sequential, optimizer, device, dtype, checkpointing, chunk, lr, seed, threads, json, group, promptTokens, responseTokens }) cmd.Options.Add(o);
        cmd.SetAction(parse =>
        {
            var stdout = parse.InvocationConfiguration.Output;
            var stderr = parse.InvocationConfiguration.Error;
            var warm = BenchCommon.NonNegative("--warmup", parse.GetValue(warmup));
            var timed = BenchCommon.Positive("--steps", parse.GetValue(steps));
            var chunkSize = BenchCommon.Positive("--chunk-size", parse.GetValue(chunk));
            var nThreads = BenchCommon.NonNegative("--threads", parse.GetValue(threads));
            var learningRate = parse.GetValue(lr);
            if (!(learningRate >= 0) || !double.IsFinite(learningRate)) throw new BupoException($"--lr must be a non-negative number, got {learningRate}");
            var modeList = BenchCommon.List("--modes", parse.GetValue(modes)).Select(m =>
            {
                var i = TrainBenchmark.ModeNames.ToList().IndexOf(m.ToLowerInvariant());
                return i >= 0 ? (TrainStepMode)i : throw new BupoException($"--modes: '{m}' is not one of {string.Join(", ", TrainBenchmark.ModeNames)}");
            }).Distinct().Order().ToArray();
            source.Validate(parse);
            var dev = ModelDevice.Parse(parse.GetValue(device)); // an unavailable device fails before any model is written or loaded
            var type = ModelDevice.ParsePrecision(parse.GetValue(dtype));
            var cuda = dev.type == DeviceType.CUDA;
            var b = BenchCommon.Positive("--batch", parse.GetValue(batch) ?? (cuda ? 8 : 2));
            var t = BenchCommon.Positive("--seq", parse.GetValue(seq) ?? (cuda ? 1024 : 128));

            var g = parse.GetValue(group) is { } gv ? BenchCommon.Positive("--group", gv) : (int?)null;
            var pTokens = BenchCommon.Positive("--prompt-tokens", parse.GetValue(promptTokens));
            var rTokens = BenchCommon.Positive("--response-tokens", parse.GetValue(responseTokens));
            if (g is not null && modeList.Contains(TrainStepMode.Reference)) throw new BupoException("--group: the RL-shape benchmark runs the trainer's full and bupo steps; leave 'reference' out of --modes");

            var console = CliConsole.Create(stdout);
            var model = source.Resolve(parse, m => BenchCommon.Log(stderr, m));
            var config = TransformerConfig.FromGguf(model.Path);
            var k = parse.GetValue(layer) ?? (config.LayerCount > 5 ? 5 : (config.LayerCount - 1) / 2);
            if (k < 0 || k >= config.LayerCount) throw new BupoException($"--layer {k}: the model has {config.LayerCount} blocks, 0..{config.LayerCount - 1}");
            if (nThreads > 0) torch.set_num_threads(nThreads);
            if (g is { } groupSize)
                return RunGroupShape(console, stderr, model, config, dev, type, modeList, parse.GetValue(batch) ?? (cuda ? 8 : 2), groupSize, pTokens, rTokens, k,
                    warm, timed, learningRate, parse.GetValue(checkpointing), parse.GetValue(seed), nThreads, parse.GetValue(json));

            BenchCommon.Log(stderr, $"loading {model.Label} into the trainer ({TypeName(type)}, {dev})");
            using var net = TransformerModel.FromGguf(model.Path, dev, type);
            GC.Collect(); // the load's managed float[] copies of the weights
            GC.WaitForPendingFinalizers();
            var result = TrainBenchmark.Run(net, new TrainBenchmarkSettings
            {
                Modes = modeList, Batch = b, Seq = t, Layer = k, Warmup = warm, Steps = timed, ChunkSize = chunkSize, LearningRate = learningRate,
                Checkpointing = parse.GetValue(checkpointing), Seed = parse.GetValue(seed), Sequential = parse.GetValue(sequential),
                TorchOptimizer = parse.GetValue(optimizer) == "torch",
            }, m => BenchCommon.Log(stderr, m));

            var tokens = result.TokensPerStep;
            var table = new Table
            {
                Title = new TableTitle(Markup.Escape($"bench train: {model.Label}, {config.LayerCount} blocks, batch {b} x {t} tokens, layer k = {k}, {TypeName(type)}, {dev}, {parse.GetValue(optimizer)} AdamW")),
            };
            table.AddColumns("step", "ms/step", "min ms", "tokens/s", "vs full", "vs reference", "H100 anchor vs full");
            foreach (var c in table.Columns.Skip(1)) c.RightAligned();
            var hasFull = result.Modes.Any(r => r.Mode == TrainStepMode.Full);
            var hasReference = result.Modes.Any(r => r.Mode == TrainStepMode.Reference);
            var rows = new JsonArray();
            foreach (var r in result.Modes)
            {
                var tps = result.TokensPerSecond(r);
                var vsFull = result.Speedup(r, TrainStepMode.Full);
                var vsRef = result.Speedup(r, TrainStepMode.Reference);
                var anchor = TrainBenchmark.AnchorSpeedupVsFull(r.Mode);
                table.AddRow(Markup.Escape(TrainBenchmark.Describe(r.Mode, k)), BenchCommon.F(r.MeanMs, 1), BenchCommon.F(r.MinMs, 1), BenchCommon.F(tps, 0),
                    hasFull ? BenchCommon.Ratio(vsFull) : "-", hasReference && r.Mode != TrainStepMode.Full ? BenchCommon.Ratio(vsRef) : "-", BenchCommon.Ratio(anchor));
                rows.Add(new JsonObject
                {
                    ["mode"] = TrainBenchmark.ModeNames[(int)r.Mode],
                    ["description"] = TrainBenchmark.Describe(r.Mode, k),
                    ["ms_per_step"] = BenchCommon.Num(r.MeanMs, 3),
                    ["min_ms_per_step"] = BenchCommon.Num(r.MinMs, 3),
                    ["step_ms"] = new JsonArray(r.StepMs.Select(x => BenchCommon.Num(x, 3)).ToArray()),
                    ["tokens_per_step"] = tokens,
                    ["tokens_per_second"] = BenchCommon.Num(tps, 1),
                    ["speedup_vs_full"] = BenchCommon.Num(vsFull),
                    ["speedup_vs_reference"] = r.Mode == TrainStepMode.Full ? null : BenchCommon.Num(vsRef),
                    ["h100_anchor_tokens_per_second"] = TrainBenchmark.AnchorTokensPerSecond[(int)r.Mode],
                    ["h100_anchor_speedup_vs_full"] = BenchCommon.Num(anchor),
                    ["trained_parameters"] = r.TrainedParameters,
                    ["final_loss"] = BenchCommon.Num(r.LastLoss, 6),
                });
            }
            console.Write(table);
            console.WriteLine($"ms/step: mean of the timed steps (forward + backward + grad-norm clip + AdamW step; modes {(parse.GetValue(sequential) ? "one after the other" : "interleaved")}); vs full / vs reference: speed ratio (higher = faster).");
            console.WriteLine("reference: whole model, all hidden states and the final logits kept, block k's lens logits materialized; bupo: blocks 0..k only, chunked lens log-probs.");
            console.WriteLine("H100 anchor: PLATFORM_NOTES' PyTorch 2.11 numbers (Qwen3-0.6B shape, bf16 autocast, SDPA, fused AdamW, 8 x 1024 tokens, k = 5): 34,757 / 62,562 / 97,360 tokens/s.");
            if (PrecisionNote(type) is { } note) console.WriteLine(note);
            console.WriteLine(model.Note);
            console.WriteLine(BenchCommon.MachineNote() + (BenchMachine.PeakRssGiB() is { } rss ? FormattableString.Invariant($"; process peak RSS {rss:F2} GiB") : ""));

            if (parse.GetValue(json) is { } file)
            {
                var settings = new JsonObject
                {
                    ["batch"] = b, ["seq"] = t, ["layer"] = k, ["n_layer"] = config.LayerCount, ["steps"] = timed, ["warmup"] = warm,
                    ["device"] = dev.ToString(), ["dtype"] = TypeName(type), ["checkpointing"] = parse.GetValue(checkpointing), ["sequential"] = parse.GetValue(sequential), ["optimizer"] = parse.GetValue(optimizer), ["chunk_size"] = chunkSize,
                    ["lr"] = learningRate, ["threads"] = nThreads == 0 ? torch.get_num_threads() : nThreads,
                    ["peak_rss_gib"] = BenchMachine.PeakRssGiB() is { } p ? BenchCommon.Num(p, 3) : null,
                };
                BenchCommon.WriteJson(file, BenchCommon.Document("train", model, settings, rows), console);
            }
            return 0;
        });
        return cmd;
    }

    /// <summary>Runs <see cref="TrainBenchmark.RunGroupShape"/> and renders its table and JSON.</summary>
    private static int RunGroupShape(IAnsiConsole console, TextWriter stderr, BenchModel model, TransformerConfig config, Device dev, TrainPrecision type,
        IReadOnlyList<TrainStepMode> modes, int prompts, int g, int p, int r, int k, int warm, int timed, double lr, bool checkpointing, int seed, int threads, FileInfo? json)
    {
        BenchCommon.Positive("--batch", prompts);
        BenchCommon.Log(stderr, $"loading {model.Label} into the trainer ({TypeName(type)}, {dev})");
        GroupShapeResult result;
        using (var net = TransformerModel.FromGguf(model.Path, dev, type))
            result = TrainBenchmark.RunGroupShape(net, new GroupShapeSettings
            {
                Modes = modes, Prompts = prompts, Group = g, PromptTokens = p, ResponseTokens = r, Layer = k, Warmup = warm, Steps = timed,
                LearningRate = lr, Checkpointing = checkpointing, Seed = seed,
            }, m => BenchCommon.Log(stderr, m));
        var table = new Table
        {
            Title = new TableTitle(Markup.Escape($"bench train (RL shape): {model.Label}, {config.LayerCount} blocks, {prompts} prompts x G {g}, P {p}, R {r}, layer k = {k}, {TypeName(type)}, {dev}")),
        };
        table.AddColumns("step", "path", "ms/update", "min ms", "trained tokens", "response tokens/s", "shared-prefix speedup");
        foreach (var c in table.Columns.Skip(2)) c.RightAligned();
        var rows = new JsonArray();
        foreach (var row in result.Rows)
        {
            var speedup = result.SpeedupVsPerSequence(row);
            var desc = row.Mode == TrainStepMode.Full ? "full policy (GRPO)" : $"layer-{k} policy (IPA), blocks 0..{k}";
            var path = row.SharedPrefix ? "shared prefix" : "one sequence per response";
            table.AddRow(Markup.Escape(desc), path, BenchCommon.F(row.MeanMs, 1), BenchCommon.F(row.MinMs, 1), row.TrainTokens.ToString("N0", System.Globalization.CultureInfo.InvariantCulture),
                BenchCommon.F(row.ResponseTokensPerSecond, 0), row.SharedPrefix ? BenchCommon.Ratio(speedup) : "1.00x");
            rows.Add(new JsonObject
            {
                ["mode"] = TrainBenchmark.ModeNames[(int)row.Mode], ["shared_prefix"] = row.SharedPrefix, ["description"] = desc,
                ["ms_per_update"] = BenchCommon.Num(row.MeanMs, 3), ["min_ms_per_update"] = BenchCommon.Num(row.MinMs, 3),
                ["update_ms"] = new JsonArray(row.UpdateMs.Select(x => BenchCommon.Num(x, 3)).ToArray()),
                ["train_tokens"] = row.TrainTokens, ["response_tokens"] = row.ResponseTokens,
                ["speedup_vs_per_sequence"] = BenchCommon.Num(speedup),
            });
        }
        console.Write(table);
        console.WriteLine("ms/update: GrpoTrainer.Update as train runs it (old log-probs with no grad, then one mini-batch of forward + backward + grad-norm clip + AdamW); paths interleaved.");
        console.WriteLine("trained tokens: tokens through the differentiable forward (the shared prefix counts each prompt once).");
        if (PrecisionNote(type) is { } note) console.WriteLine(note);
        console.WriteLine(model.Note);
        console.WriteLine(BenchCommon.MachineNote() + (BenchMachine.PeakRssGiB() is { } rss ? FormattableString.Invariant($"; process peak RSS {rss:F2} GiB") : ""));
        if (json is { } file)
        {
            var settings = new JsonObject
            {
                ["prompts"] = prompts, ["group"] = g, ["prompt_tokens"] = p, ["response_tokens"] = r, ["layer"] = k, ["n_layer"] = config.LayerCount,
                ["steps"] = timed, ["warmup"] = warm, ["device"] = dev.ToString(), ["dtype"] = TypeName(type), ["checkpointing"] = checkpointing, ["lr"] = lr,
                ["threads"] = threads == 0 ? torch.get_num_threads() : threads,
                ["peak_rss_gib"] = BenchMachine.PeakRssGiB() is { } pk ? BenchCommon.Num(pk, 3) : null,
            };
            BenchCommon.WriteJson(file, BenchCommon.Document("train", model, settings, rows), console);
        }
        return 0;
    }

    private static string TypeName(TrainPrecision t) => t.ShortName();

    /// <summary>What bf16 means here, next to the PyTorch anchors (which are bf16 autocast with float32 masters); null for f32.</summary>
    private static string? PrecisionNote(TrainPrecision t) => t switch
    {
        TrainPrecision.BFloat16Mixed => "bf16 here is mixed precision like the anchors' autocast: float32 master weights and AdamW state, each weight cast to bfloat16 where the forward uses it (TorchSharp 0.107 has no autocast), float32 log-softmax and loss.",
        TrainPrecision.BFloat16Pure => "bf16-pure: bfloat16 weights and AdamW state with no float32 master (the anchors use float32 masters with bf16 autocast). " + TrainPrecisionTypes.PureBf16Warning,
        _ => null,
    };
}
