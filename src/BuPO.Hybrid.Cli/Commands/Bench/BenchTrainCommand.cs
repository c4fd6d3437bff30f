using System.CommandLine;
using System.Diagnostics;
using System.Text.Json.Nodes;
using BuPO.Hybrid.Model;
using AdamW = BuPO.Hybrid.RL.Algorithms.AdamW;
using Spectre.Console;
using TorchSharp;
using static TorchSharp.torch;
using TF = TorchSharp.torch.nn.functional;
using BuPO.Hybrid.RL.Algorithms;

namespace BuPO.Hybrid.Cli.Commands.Bench;

/// <summary>
/// <c>bupo-hybrid bench train</c>: trainer throughput of one forward + backward + AdamW step on random tokens, for the
/// full policy (a GRPO step) and for a BuPO layer-k step done two ways: the reference's (the whole model runs, every hidden
/// state and the final [tokens x vocab] logits are kept, then block k's [tokens x vocab] lens logits are materialized) and
/// ours (only blocks 0..k run; log-probs through the chunked <see cref="InternalPolicyHead"/>, never [tokens x vocab] at
/// once). Each step ends as the trainer's (GrpoTrainer): global grad-norm clip to 1.0 and the trainer's own AdamW. The modes run interleaved (one step of each in turn) so load changes on a shared machine hit all of them alike;
/// the ratios are the result to compare with PLATFORM_NOTES' H100 anchors.
/// </summary>
public static class BenchTrainCommand
{
    /// <summary>The step variants, in table order.</summary>
    internal enum Mode { Full, Reference, Bupo }

    private static readonly string[] ModeNames = ["full", "reference", "bupo"];

    /// <summary>PLATFORM_NOTES' H100 anchors (PyTorch 2.11, Qwen3-0.6B shape, bf16 autocast, 8 x 1024 tokens): tokens/s per mode.</summary>
    private static readonly double[] AnchorTokensPerSecond = [34_757, 62_562, 97_360];

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
                var i = Array.IndexOf(ModeNames, m.ToLowerInvariant());
                return i >= 0 ? (Mode)i : throw new BupoException($"--modes: '{m}' is not one of {string.Join(", ", ModeNames)}");
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
            if (g is not null && modeList.Contains(Mode.Reference)) throw new BupoException("--group: the RL-shape benchmark runs the trainer's full and bupo steps; leave 'reference' out of --modes");

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
            var results = Run(net, modeList, b, t, k, warm, timed, chunkSize, learningRate, parse.GetValue(checkpointing), parse.GetValue(seed),
                parse.GetValue(sequential), m => BenchCommon.Log(stderr, m), parse.GetValue(optimizer) == "torch");

            var tokens = (long)b * t;
            var table = new Table
            {
                Title = new TableTitle(Markup.Escape($"bench train: {model.Label}, {config.LayerCount} blocks, batch {b} x {t} tokens, layer k = {k}, {TypeName(type)}, {dev}, {parse.GetValue(optimizer)} AdamW")),
            };
            table.AddColumns("step", "ms/step", "min ms", "tokens/s", "vs full", "vs reference", "H100 anchor vs full");
            foreach (var c in table.Columns.Skip(1)) c.RightAligned();
            var full = results.FirstOrDefault(r => r.Mode == Mode.Full);
            var reference = results.FirstOrDefault(r => r.Mode == Mode.Reference);
            var rows = new JsonArray();
            foreach (var r in results)
            {
                var tps = tokens / (r.MeanMs / 1000);
                var vsFull = full != null ? full.MeanMs / r.MeanMs : double.NaN;
                var vsRef = reference != null ? reference.MeanMs / r.MeanMs : double.NaN;
                var anchor = AnchorTokensPerSecond[(int)r.Mode] / AnchorTokensPerSecond[0];
                table.AddRow(Markup.Escape(Describe(r.Mode, k)), BenchCommon.F(r.MeanMs, 1), BenchCommon.F(r.MinMs, 1), BenchCommon.F(tps, 0),
                    full != null ? BenchCommon.Ratio(vsFull) : "-", reference != null && r.Mode != Mode.Full ? BenchCommon.Ratio(vsRef) : "-", BenchCommon.Ratio(anchor));
                rows.Add(new JsonObject
                {
                    ["mode"] = ModeNames[(int)r.Mode],
                    ["description"] = Describe(r.Mode, k),
                    ["ms_per_step"] = BenchCommon.Num(r.MeanMs, 3),
                    ["min_ms_per_step"] = BenchCommon.Num(r.MinMs, 3),
                    ["step_ms"] = new JsonArray(r.StepMs.Select(x => BenchCommon.Num(x, 3)).ToArray()),
                    ["tokens_per_step"] = tokens,
                    ["tokens_per_second"] = BenchCommon.Num(tps, 1),
                    ["speedup_vs_full"] = BenchCommon.Num(vsFull),
                    ["speedup_vs_reference"] = r.Mode == Mode.Full ? null : BenchCommon.Num(vsRef),
                    ["h100_anchor_tokens_per_second"] = AnchorTokensPerSecond[(int)r.Mode],
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
            console.WriteLine(BenchCommon.MachineNote() + (BenchCommon.PeakRssGiB() is { } rss ? FormattableString.Invariant($"; process peak RSS {rss:F2} GiB") : ""));

            if (parse.GetValue(json) is { } file)
            {
                var settings = new JsonObject
                {
                    ["batch"] = b, ["seq"] = t, ["layer"] = k, ["n_layer"] = config.LayerCount, ["steps"] = timed, ["warmup"] = warm,
                    ["device"] = dev.ToString(), ["dtype"] = TypeName(type), ["checkpointing"] = parse.GetValue(checkpointing), ["sequential"] = parse.GetValue(sequential), ["optimizer"] = parse.GetValue(optimizer), ["chunk_size"] = chunkSize,
                    ["lr"] = learningRate, ["threads"] = nThreads == 0 ? torch.get_num_threads() : nThreads,
                    ["peak_rss_gib"] = BenchCommon.PeakRssGiB() is { } p ? BenchCommon.Num(p, 3) : null,
                };
                BenchCommon.WriteJson(file, BenchCommon.Document("train", model, settings, rows), console);
            }
            return 0;
        });
        return cmd;
    }

    /// <summary>
    /// The RL-shape benchmark: <paramref name="prompts"/> prompts of P tokens with G responses of R tokens each, one update of
    /// the real trainer (<see cref="RL.Training.GrpoTrainer.Update"/>: the no-grad old-log-prob pass, then forward + backward
    /// + AdamW in one mini-batch) per timed step, with the shared-prefix forward and with one sequence per response,
    /// interleaved so that load changes hit both alike.
    /// </summary>
    private static int RunGroupShape(IAnsiConsole console, TextWriter stderr, BenchModel model, TransformerConfig config, Device dev, TrainPrecision type,
        IReadOnlyList<Mode> modes, int prompts, int g, int p, int r, int k, int warm, int timed, double lr, bool checkpointing, int seed, int threads, FileInfo? json)
    {
        BenchCommon.Positive("--batch", prompts);
        BenchCommon.Log(stderr, $"loading {model.Label} into the trainer ({TypeName(type)}, {dev})");
        using var net = TransformerModel.FromGguf(model.Path, dev, type);
        var rng = new Random(seed);
        var vocab = config.VocabSize;
        var seqs = new List<RL.Training.TrainingSequence>();
        for (var i = 0; i < prompts; i++)
        {
            var prompt = Enumerable.Range(0, p).Select(_ => rng.Next(vocab)).ToArray();
            for (var j = 0; j < g; j++)
            {
                var resp = Enumerable.Range(0, r).Select(_ => rng.Next(vocab)).ToArray();
                seqs.Add(new RL.Training.TrainingSequence(i, prompt, resp, Enumerable.Repeat((float)-Math.Log(vocab), r).ToArray(), j % 2 == 0 ? 1.0 : -1.0));
            }
        }
        var variants = modes.SelectMany(m => new[] { (Mode: m, Shared: false), (Mode: m, Shared: true) }).ToArray();
        var options = new RL.Training.GrpoSettings
        {
            // Dr. GRPO's constant normaliser is the response budget, as TrainOptions sets it from --max-response-tokens.
            Clip = new PpoClipOptions { TokenSumNormalizer = r },
            MiniBatchPrompts = prompts, MicroBatchTokens = int.MaxValue, GradientCheckpointing = checkpointing, Seed = seed, Tis = true,
        };
        var trainers = variants.Select(v => new RL.Training.GrpoTrainer(net, options with { SharedPrefix = v.Shared })).ToArray();
        var times = variants.Select(_ => new List<double>()).ToArray();
        var stats = new RL.Training.UpdateStats?[variants.Length];
        try
        {
            for (var step = 0; step < warm + timed; step++)
                for (var v = 0; v < variants.Length; v++)
                {
                    var ipa = variants[v].Mode == Mode.Bupo;
                    BenchCommon.Sync(dev);
                    var sw = Stopwatch.StartNew();
                    stats[v] = trainers[v].Update(step + 1, seqs, ipa ? k : null, ipa, lr);
                    BenchCommon.Sync(dev);
                    var ms = sw.Elapsed.TotalMilliseconds;
                    if (step >= warm) times[v].Add(ms);
                    BenchCommon.Log(stderr, FormattableString.Invariant($"{(step < warm ? "warm-up" : "step")} {ModeNames[(int)variants[v].Mode]} {(variants[v].Shared ? "shared-prefix" : "per-sequence")}: {ms:F1} ms"));
                    GC.Collect();
                    GC.WaitForPendingFinalizers();
                }
        }
        finally
        {
            foreach (var t in trainers) t.Dispose();
        }
        var table = new Table
        {
            Title = new TableTitle(Markup.Escape($"bench train (RL shape): {model.Label}, {config.LayerCount} blocks, {prompts} prompts x G {g}, P {p}, R {r}, layer k = {k}, {TypeName(type)}, {dev}")),
        };
        table.AddColumns("step", "path", "ms/update", "min ms", "trained tokens", "response tokens/s", "shared-prefix speedup");
        foreach (var c in table.Columns.Skip(2)) c.RightAligned();
        var rows = new JsonArray();
        for (var v = 0; v < variants.Length; v++)
        {
            var mean = times[v].Average();
            var baseline = Array.FindIndex(variants, x => x.Mode == variants[v].Mode && !x.Shared);
            var speedup = times[baseline].Average() / mean;
            var responseTokens = (long)prompts * g * r;
            var desc = variants[v].Mode == Mode.Full ? "full policy (GRPO)" : $"layer-{k} policy (IPA), blocks 0..{k}";
            var path = variants[v].Shared ? "shared prefix" : "one sequence per response";
            table.AddRow(Markup.Escape(desc), path, BenchCommon.F(mean, 1), BenchCommon.F(times[v].Min(), 1), stats[v]!.TrainTokens.ToString("N0", System.Globalization.CultureInfo.InvariantCulture),
                BenchCommon.F(responseTokens / (mean / 1000), 0), variants[v].Shared ? BenchCommon.Ratio(speedup) : "1.00x");
            rows.Add(new JsonObject
            {
                ["mode"] = ModeNames[(int)variants[v].Mode], ["shared_prefix"] = variants[v].Shared, ["description"] = desc,
                ["ms_per_update"] = BenchCommon.Num(mean, 3), ["min_ms_per_update"] = BenchCommon.Num(times[v].Min(), 3),
                ["update_ms"] = new JsonArray(times[v].Select(x => BenchCommon.Num(x, 3)).ToArray()),
                ["train_tokens"] = stats[v]!.TrainTokens, ["response_tokens"] = responseTokens,
                ["speedup_vs_per_sequence"] = BenchCommon.Num(speedup),
            });
        }
        console.Write(table);
        console.WriteLine("ms/update: GrpoTrainer.Update as train runs it (old log-probs with no grad, then one mini-batch of forward + backward + grad-norm clip + AdamW); paths interleaved.");
        console.WriteLine("trained tokens: tokens through the differentiable forward (the shared prefix counts each prompt once).");
        if (PrecisionNote(type) is { } note) console.WriteLine(note);
        console.WriteLine(model.Note);
        console.WriteLine(BenchCommon.MachineNote() + (BenchCommon.PeakRssGiB() is { } rss ? FormattableString.Invariant($"; process peak RSS {rss:F2} GiB") : ""));
        if (json is { } file)
        {
            var settings = new JsonObject
            {
                ["prompts"] = prompts, ["group"] = g, ["prompt_tokens"] = p, ["response_tokens"] = r, ["layer"] = k, ["n_layer"] = config.LayerCount,
                ["steps"] = timed, ["warmup"] = warm, ["device"] = dev.ToString(), ["dtype"] = TypeName(type), ["checkpointing"] = checkpointing, ["lr"] = lr,
                ["threads"] = threads == 0 ? torch.get_num_threads() : threads,
                ["peak_rss_gib"] = BenchCommon.PeakRssGiB() is { } pk ? BenchCommon.Num(pk, 3) : null,
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

    internal static string Describe(Mode m, int k) => m switch
    {
        Mode.Full => "full policy (GRPO)",
        Mode.Reference => $"layer-{k} policy, reference style (full forward, all hidden states)",
        _ => $"layer-{k} policy, only blocks 0..{k} run",
    };

    internal sealed record ModeResult(Mode Mode, double[] StepMs, long TrainedParameters, double LastLoss)
    {
        public double MeanMs => StepMs.Average();
        public double MinMs => StepMs.Min();
    }

    /// <summary>
    /// Runs <paramref name="warmup"/> then <paramref name="steps"/> steps of every mode: one step of each mode in turn (every
    /// mode's optimizer state alive at once), or with <paramref name="sequential"/> one mode after the other (one optimizer
    /// state at a time: less memory, but load changes on a shared machine are no longer spread over the modes).
    /// </summary>
    internal static IReadOnlyList<ModeResult> Run(TransformerModel model, IReadOnlyList<Mode> modes, int batch, int seq, int k, int warmup, int steps,
        int chunkSize, double lr, bool checkpointing, int seed, bool sequential, Action<string> log, bool torchOptimizer = false)
    {
        var vocab = model.Config.VocabSize;
        var gen = new Random(seed);
        using var tokens = torch.tensor(Enumerable.Range(0, batch * seq).Select(_ => (long)gen.Next(vocab)).ToArray(), [batch, seq], ScalarType.Int64, model.Device);
        using var targets = torch.tensor(Enumerable.Range(0, batch * seq).Select(_ => (long)gen.Next(vocab)).ToArray(), [batch, seq], ScalarType.Int64, model.Device);
        using var advantages = torch.tensor(Enumerable.Range(0, batch).Select(i => i % 2 == 0 ? 1f : -1f).ToArray(), [batch], ScalarType.Float32, model.Device);
        using var mask = torch.ones([batch, seq], ScalarType.Float32, model.Device);
        StepRunner Make(Mode m) => new(model, m, k, chunkSize, lr, checkpointing, torchOptimizer, tokens, targets, advantages, mask);
        void Time(StepRunner r, int i, List<double> times)
        {
            var ms = r.Step();
            if (i >= warmup) times.Add(ms);
            log(FormattableString.Invariant($"{(i < warmup ? "warm-up" : "step")} {(i < warmup ? i + 1 : i - warmup + 1)}/{(i < warmup ? warmup : steps)} {ModeNames[(int)r.Mode]}: {ms:F1} ms (RSS {BenchCommon.RssGiB() ?? double.NaN:F2} GiB)"));
        }

        if (sequential)
        {
            var results = new List<ModeResult>();
            foreach (var m in modes)
            {
                var times = new List<double>();
                using (var r = Make(m))
                {
                    for (var i = 0; i < warmup + steps; i++) Time(r, i, times);
                    results.Add(new ModeResult(m, times.ToArray(), r.TrainedParameters, r.LastLoss));
                }
                model.zero_grad(set_to_none: true);
                GC.Collect();
                GC.WaitForPendingFinalizers();
            }
            return results;
        }
        var runners = modes.Select(Make).ToArray();
        try
        {
            var times = runners.Select(_ => new List<double>()).ToArray();
            for (var i = 0; i < warmup + steps; i++)
                for (var j = 0; j < runners.Length; j++) Time(runners[j], i, times[j]);
            return runners.Select((r, j) => new ModeResult(r.Mode, times[j].ToArray(), r.TrainedParameters, r.LastLoss)).ToArray();
        }
        finally
        {
            foreach (var r in runners) r.Dispose();
            model.zero_grad(set_to_none: true);
        }
    }

    /// <summary>
    /// One mode's step, as GrpoTrainer takes it: the trainer's own <see cref="AdamW"/> over every parameter (those without a
    /// gradient, the blocks above k in the layer-k steps, are skipped as in PyTorch), the global grad norm clipped to 1.0.
    /// </summary>
    private sealed class StepRunner : IDisposable
    {
        private readonly TransformerModel _model;
        private readonly int _k, _chunk;
        private readonly bool _checkpointing;
        private readonly Tensor _tokens, _targets, _advantages, _mask;
        private readonly AdamW? _optimizer;
        private readonly torch.optim.Optimizer? _torchOptimizer;
        private readonly List<TorchSharp.Modules.Parameter> _params;
        private readonly double _lr;

        public Mode Mode { get; }
        /// <summary>Parameters that got a gradient (and an update) in the last step.</summary>
        public long TrainedParameters { get; private set; }
        public double LastLoss { get; private set; } = double.NaN;

        public StepRunner(TransformerModel model, Mode mode, int k, int chunk, double lr, bool checkpointing, bool torchOptimizer,
            Tensor tokens, Tensor targets, Tensor advantages, Tensor mask)
        {
            _model = model; Mode = mode; _k = k; _chunk = chunk; _checkpointing = checkpointing;
            _tokens = tokens; _targets = targets; _advantages = advantages; _mask = mask; _lr = lr;
            _params = model.GgufParameters.Select(p => p.Value).ToList();
            if (torchOptimizer)
                // Measured for comparison only (--optimizer torch): its step makes temporary Scalars (BUPO002), which the
                // trainer never uses for that reason.
#pragma warning disable BUPO002
                _torchOptimizer = torch.optim.AdamW(mode == Mode.Full ? _params : model.ParametersUpToBlock(k).Distinct(ReferenceEqualityComparer.Instance).Cast<TorchSharp.Modules.Parameter>().ToList(), lr,
                    beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01);
#pragma warning restore BUPO002
            else _optimizer = new AdamW(model.GgufParameters, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01);
        }

        /// <summary>One step; returns its wall time in ms (the device synchronized at the end).</summary>
        public double Step()
        {
            var device = _model.Device;
            BenchCommon.Sync(device);
            var sw = Stopwatch.StartNew();
            if (_optimizer != null) _optimizer.ZeroGrad();
            else _model.zero_grad(set_to_none: true);
            using (var scope = NewDisposeScope())
            {
                Tensor logProbs;
                ForwardResult fwd;
                switch (Mode)
                {
                    case Mode.Full:
                        fwd = _model.Forward(_tokens, null, null, new ForwardOptions { ComputeLogits = false, GradientCheckpointing = _checkpointing });
                        logProbs = InternalPolicyHead.FullPolicy(_model, 1.0, _chunk).LogProbs(fwd.LastHidden, _targets);
                        break;
                    case Mode.Reference:
                        // The reference: the whole model with output_hidden_states, the final logits made (and kept) by the forward,
                        // then a second [tokens x vocab] logits tensor from block k's hidden state, log-softmaxed whole.
                        fwd = _model.Forward(_tokens, null, null, new ForwardOptions
                        {
                            ComputeLogits = true, Residuals = ForwardOptions.AllBlocks(_model.Config.LayerCount),
                        });
                        var hk = fwd.Residuals[_k];
                        var u = hk.dtype == _model.Unembedding.dtype ? _model.Unembedding : _model.Unembedding.to_type(hk.dtype); // bf16 copy under mixed precision
                        var lens = TF.linear(hk, u).to_type(ScalarType.Float32);
                        logProbs = lens.log_softmax(-1).gather(-1, _targets.unsqueeze(-1)).squeeze(-1);
                        break;
                    default:
                        fwd = _model.Forward(_tokens, null, null, new ForwardOptions { StopAfterBlock = _k, ComputeLogits = false, GradientCheckpointing = _checkpointing });
                        logProbs = new InternalPolicyHead(_model, LensNorm.Identity, 1.0, _chunk).LogProbs(fwd.LastHidden, _targets);
                        break;
                }
                // On-policy step: π_old = π (detached), as the first update after a rollout; GRPO's clipped loss, token-mean.
                var loss = PolicyLoss.Compute(logProbs, logProbs.detach(), _advantages, _mask, new PpoClipOptions()).Loss;
                loss.backward();
                if (_optimizer != null)
                {
                    var norm = _optimizer.GradNorm();
                    if (double.IsFinite(norm))
                    {
                        _optimizer.ClipGrads(norm, 1.0);
                        _optimizer.Step(_lr);
                    }
                }
                else
                {
                    nn.utils.clip_grad_norm_(_params.Where(p => p.grad is not null), 1.0);
                    _torchOptimizer!.step();
                }
                TrainedParameters = _model.GgufParameters.Sum(p => p.Value.grad is { } g ? g.numel() : 0);
                LastLoss = loss.detach().to_type(ScalarType.Float64).item<double>();
                fwd.Dispose();
            }
            BenchCommon.Sync(device);
            var ms = sw.Elapsed.TotalMilliseconds;
            // Untimed: tensor handles TorchSharp made outside any dispose scope (gradients read by the optimizer) hold their
            // storage until finalized; without a collection here the big shapes grew by a gradient's size per step.
            GC.Collect();
            GC.WaitForPendingFinalizers();
            return ms;
        }

        public void Dispose()
        {
            _optimizer?.Dispose();
            _torchOptimizer?.Dispose();
        }
    }
}
