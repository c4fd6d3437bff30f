using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using BuPO.Hybrid.Analysis;
using BuPO.Hybrid.Data;
using BuPO.Hybrid.Demo;
using BuPO.Hybrid.Gguf;
using BuPO.Hybrid.Model;
using BuPO.Hybrid.RL;
using BuPO.Hybrid.RL.Training;
using ScottPlot;
using Spectre.Console;
using TorchSharp;

namespace BuPO.Hybrid.Cli.Commands;

/// <summary>The sizes of one demo run (default or --quick).</summary>
public sealed record DemoProfile
{
    public required string Name { get; init; }
    public required DemoModelSpec Model { get; init; }
    public required ArithmeticTaskOptions Tasks { get; init; }
    public int SftSteps { get; init; }
    public int SftBatch { get; init; }
    public double SftLr { get; init; }
    /// <summary>Share of SFT demonstrations without their last step (<see cref="SftOptions.DroppedStepShare"/>).</summary>
    public double SftDroppedStepShare { get; init; }
    public int AnalysisPrompts { get; init; }
    public int RlSteps { get; init; }
    public int RlPromptsPerStep { get; init; }
    public int RlSamplesPerPrompt { get; init; }
    public double RlLr { get; init; }
    /// <summary>Prompts per PPO mini-batch (one optimizer step each).</summary>
    public int RlMiniBatchPrompts { get; init; }
    /// <summary>Passes over each rollout batch.</summary>
    public int RlPpoEpochs { get; init; } = 1;
    public int BupoSteps { get; init; }
    /// <summary>Size of the RL prompt pool (distinct problems of the RL split while it has them), walked through in seeded epochs.</summary>
    public int RlTrainPrompts { get; init; }
    public int EvalProblems { get; init; }
    public int EvalK { get; init; }
    /// <summary>Held-out problems (the first ones) and samples of the layer-k policy evaluation (torch sampler, costly).</summary>
    public int LayerEvalProblems { get; init; }
    public int LayerEvalK { get; init; }
    public int MaxResponseTokens { get; init; }

    public static DemoProfile Default => new()
    {
        Name = "default",
        Model = new DemoModelSpec { Layers = 6, Embedding = 64, HeadDim = 16, FeedForward = 192, ContextLength = 256 },
        Tasks = new ArithmeticTaskOptions { MaxSteps = 2, RlFraction = 0.3 },
        SftSteps = 500, SftBatch = 32, SftLr = 3e-3, SftDroppedStepShare = 0.25,
        AnalysisPrompts = 32,
        RlSteps = 30, RlPromptsPerStep = 32, RlSamplesPerPrompt = 8, RlLr = 1e-4, RlMiniBatchPrompts = 8, BupoSteps = 5, RlTrainPrompts = 640,
        EvalProblems = 200, EvalK = 8, MaxResponseTokens = 40, LayerEvalProblems = 48, LayerEvalK = 4,
    };

    /// <summary>This profile with the command line's overrides applied (each checked).</summary>
    public DemoProfile With(DemoCommand.DemoArgs a)
    {
        static int Positive(int? v, int fallback, string option, int min = 1) =>
            v is { } x ? (x >= min ? x : throw new BupoException($"{option} must be >= {min}, got {x}")) : fallback;
        var p = this with
        {
            RlSteps = Positive(a.RlSteps, RlSteps, "--rl-steps"),
            RlSamplesPerPrompt = Positive(a.GroupSize, RlSamplesPerPrompt, "--group-size", 2),
            RlPromptsPerStep = Positive(a.PromptsPerStep, RlPromptsPerStep, "--prompts-per-step"),
            BupoSteps = Positive(a.BupoSteps, BupoSteps, "--bupo-steps", 0),
            EvalProblems = Positive(a.EvalProblems, EvalProblems, "--eval-problems"),
            RlMiniBatchPrompts = Positive(a.MiniBatchPrompts, RlMiniBatchPrompts, "--mini-batch-prompts"),
            RlPpoEpochs = Positive(a.PpoEpochs, RlPpoEpochs, "--ppo-epochs"),
            SftSteps = Positive(a.SftSteps, SftSteps, "--sft-steps"),
            SftDroppedStepShare = a.DroppedStepShare is { } d ? (d >= 0 && d < 1 ? d : throw new BupoException($"--dropped-step-share must be in [0, 1), got {d}")) : SftDroppedStepShare,
            Tasks = a.TaskSteps is { } ts
                ? (ts is >= 1 and <= ArithmeticTaskGenerator.MaxStepsLimit ? Tasks with { MaxSteps = ts, MinSteps = Math.Min(Tasks.MinSteps, ts) } : throw new BupoException($"--task-steps must be in [1, {ArithmeticTaskGenerator.MaxStepsLimit}], got {ts}"))
                : Tasks,
            // A step's line ("27-9=18. ") is at most 9 characters and the box 10: room for the longest solution.
            MaxResponseTokens = a.TaskSteps is { } steps ? 16 + 12 * steps : MaxResponseTokens,
            RlLr = a.RlLr is { } lr ? (lr > 0 && double.IsFinite(lr) ? lr : throw new BupoException($"--rl-lr must be a positive number, got {lr}")) : RlLr,
        };
        if (a.MiniBatchPrompts is null) p = p with { RlMiniBatchPrompts = Math.Min(p.RlMiniBatchPrompts, p.RlPromptsPerStep) }; // fewer prompts: fewer mini-batches
        if (p.RlMiniBatchPrompts > p.RlPromptsPerStep) throw new BupoException($"--mini-batch-prompts ({p.RlMiniBatchPrompts}) must be <= the prompts per step ({p.RlPromptsPerStep})");
        if (p.BupoSteps > p.RlSteps) throw new BupoException($"--bupo-steps ({p.BupoSteps}) must be <= the RL steps ({p.RlSteps})");
        return p;
    }

    public static DemoProfile Quick => new()
    {
        Name = "quick",
        Model = new DemoModelSpec { Layers = 4, Embedding = 64, HeadDim = 16, FeedForward = 192, ContextLength = 256 },
        Tasks = new ArithmeticTaskOptions { MaxSteps = 1 },
        SftSteps = 200, SftBatch = 32, SftLr = 3e-3,
        AnalysisPrompts = 8,
        RlSteps = 3, RlPromptsPerStep = 4, RlSamplesPerPrompt = 4, RlLr = 1e-4, RlMiniBatchPrompts = 2, BupoSteps = 2, RlTrainPrompts = 64,
        EvalProblems = 24, EvalK = 4, MaxResponseTokens = 24, LayerEvalProblems = 4, LayerEvalK = 2,
    };
}

/// <summary>
/// <c>bupo-hybrid demo</c>: the end-to-end demo on generated arithmetic word problems with a tiny character-level qwen3:
/// SFT (cached in --workdir) → internal-entropy analysis → GRPO and BuPO from the same SFT checkpoint (same seeds and
/// budgets) → held-out evaluation (avg@k, pass@k) → analysis of the trained models → Markdown report with plots in --out.
/// </summary>
public static class DemoCommand
{
    public static string DefaultWorkDir => Path.Combine(
        Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } x ? x : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache"),
        "bupo-hybrid", "demo");

    public static Command Create()
    {
        var outDir = new Option<string>("--out") { Description = "Folder of the report (report.md, PNG plots, JSON/CSV metrics)", DefaultValueFactory = _ => "demo-report" };
        var workDir = new Option<string?>("--workdir") { Description = $"Cache of the SFT model (default: {DefaultWorkDir})" };
        var quick = new Option<bool>("--quick") { Description = "A much smaller run (about 2 minutes on 2 CPU cores), for tests" };
        var force = new Option<bool>("--force") { Description = "Retrain the SFT model even when the work dir holds one" };
        var device = new Option<string>("--device") { Description = "Torch device of SFT, RL updates and analysis: cpu, cuda, cuda:N", DefaultValueFactory = _ => "cpu" };
        var seed = new Option<long>("--seed") { Description = "Seed of the model init, data, SFT and both RL runs", DefaultValueFactory = _ => 1L };
        var seeds = new Option<string?>("--seeds") { Description = "A multi-seed study, e.g. 1,2,3: the whole demo per seed into --out/seed-N, then study.md (mean ± std, paired BuPO - GRPO per seed, reward band)" };
        var layer = new Option<string>("--bupo-layer") { Description = "BuPO's block k: 'analysis' (the SFT model's boundary layer; the middle block when the rule picks the top one) or a 0-based block", DefaultValueFactory = _ => "analysis" };
        var threads = new Option<int>("--threads") { Description = "llama.cpp threads (sampling, evaluation, analysis)", DefaultValueFactory = _ => 1 };
        var trainThreads = new Option<int>("--train-threads") { Description = "Torch CPU threads (0 = torch's default; 1 is fastest for this tiny model on a busy machine)", DefaultValueFactory = _ => 1 };
        var rlSteps = new Option<int?>("--rl-steps") { Description = "RL steps of each run (GRPO and BuPO; default: the profile's)" };
        var rlLr = new Option<double?>("--rl-lr") { Description = "RL learning rate (default: the profile's)" };
        var bupoSteps = new Option<int?>("--bupo-steps") { Description = "BuPO's steps on the internal policy before switching to the full policy (default: the profile's)" };
        var group = new Option<int?>("--group-size") { Description = "RL samples per prompt (default: the profile's)" };
        var prompts = new Option<int?>("--prompts-per-step") { Description = "RL prompts per step (default: the profile's)" };
        var evalProblems = new Option<int?>("--eval-problems") { Description = "Held-out problems evaluated (default: the profile's)" };
        var miniBatch = new Option<int?>("--mini-batch-prompts") { Description = "RL prompts per PPO mini-batch, one optimizer step each (default: the profile's)" };
        var ppoEpochs = new Option<int?>("--ppo-epochs") { Description = "RL passes over each rollout batch (default: the profile's)" };
        var sftSteps = new Option<int?>("--sft-steps") { Description = "SFT steps (default: the profile's)" };
        var droppedSteps = new Option<double?>("--dropped-step-share") { Description = "Share of SFT demonstrations that leave out the last operation (a flawed demonstrator RL can correct; default: the profile's)" };
        var taskSteps = new Option<int?>("--task-steps") { Description = "Most operations per generated problem (task difficulty; default: the profile's)" };
        var cmd = new Command("demo", "End-to-end demo: SFT a tiny model on arithmetic word problems, analyze it, train GRPO and BuPO, evaluate, write a report")
        {
            outDir, workDir, quick, force, device, seed, layer, threads, trainThreads, rlSteps, rlLr, bupoSteps, group, prompts, evalProblems, miniBatch, ppoEpochs, sftSteps, taskSteps, droppedSteps, seeds,
        };
        cmd.SetAction(parse => Run(new DemoArgs
        {
            Out = parse.GetValue(outDir)!, WorkDir = parse.GetValue(workDir) ?? DefaultWorkDir, Quick = parse.GetValue(quick), Force = parse.GetValue(force),
            Device = parse.GetValue(device)!, Seed = parse.GetValue(seed), BupoLayer = parse.GetValue(layer)!, Threads = parse.GetValue(threads),
            TrainThreads = parse.GetValue(trainThreads), RlSteps = parse.GetValue(rlSteps), RlLr = parse.GetValue(rlLr), BupoSteps = parse.GetValue(bupoSteps),
            GroupSize = parse.GetValue(group), PromptsPerStep = parse.GetValue(prompts), EvalProblems = parse.GetValue(evalProblems),
            MiniBatchPrompts = parse.GetValue(miniBatch), PpoEpochs = parse.GetValue(ppoEpochs), SftSteps = parse.GetValue(sftSteps), TaskSteps = parse.GetValue(taskSteps), DroppedStepShare = parse.GetValue(droppedSteps),
            Seeds = parse.GetValue(seeds) is { } list ? CliConsole.ParseIntList("--seeds", list).Select(x => (long)x).ToArray() : null,
        }, parse.InvocationConfiguration.Output));
        return cmd;
    }

    public sealed record DemoArgs
    {
        public required string Out { get; init; }
        public required string WorkDir { get; init; }
        public bool Quick { get; init; }
        public bool Force { get; init; }
        public string Device { get; init; } = "cpu";
        public long Seed { get; init; } = 1;
        public string BupoLayer { get; init; } = "analysis";
        public int Threads { get; init; } = 1;
        public int TrainThreads { get; init; } = 1;
        public int? RlSteps { get; init; }
        public double? RlLr { get; init; }
        public int? BupoSteps { get; init; }
        public int? GroupSize { get; init; }
        public int? PromptsPerStep { get; init; }
        public int? EvalProblems { get; init; }
        public int? MiniBatchPrompts { get; init; }
        public int? PpoEpochs { get; init; }
        public int? SftSteps { get; init; }
        public int? TaskSteps { get; init; }
        public double? DroppedStepShare { get; init; }
        /// <summary>A multi-seed study instead of one run (then <see cref="Seed"/> is ignored).</summary>
        public long[]? Seeds { get; init; }
    }

    /// <summary>One row of the results table (results.json).</summary>
    public sealed record ResultRow(string Model, double AvgAtK, double Pass1, double PassK, double FinishedShare, string EvalFile)
    {
        /// <summary>avg@K per operation count, as in the eval file.</summary>
        public IReadOnlyDictionary<string, double> AvgAtKBySteps { get; init; } = new Dictionary<string, double>();
        /// <summary>Share of samples with fewer worked steps than operations.</summary>
        public double ShortShare { get; init; }
    }

    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    public static int Run(DemoArgs a, TextWriter stdout)
    {
        if (a.Seeds is { } list)
        {
            if (list.Length == 0 || list.Distinct().Count() != list.Length) throw new BupoException($"--seeds: give distinct seeds, e.g. 1,2,3");
            var outDir = Path.GetFullPath(a.Out);
            var results = new List<SeedResult>();
            foreach (var s in list)
            {
                var dir = Path.Combine(outDir, $"seed-{s}");
                var code = RunOne(a with { Seed = s, Seeds = null, Out = dir }, stdout);
                if (code != 0) return code;
                results.Add(SeedResult.Read(s, dir));
            }
            var p = (a.Quick ? DemoProfile.Quick : DemoProfile.Default).With(a);
            var study = SeedStudy.Write(results, outDir, p.EvalK);
            stdout.WriteLine($"multi-seed study: {study}");
            stdout.Write(File.ReadAllText(study).Split("\n\nTraining reward")[0]);
            stdout.WriteLine();
            return 0;
        }
        return RunOne(a, stdout);
    }

    private static int RunOne(DemoArgs a, TextWriter stdout)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(stdout),
            Ansi = ReferenceEquals(stdout, Console.Out) ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = ReferenceEquals(stdout, Console.Out) ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
            Interactive = InteractionSupport.No,
        });
        if (a.Threads < 1) throw new BupoException($"--threads must be >= 1, got {a.Threads}");
        if (a.TrainThreads < 0) throw new BupoException($"--train-threads must be >= 0, got {a.TrainThreads}");
        int? fixedLayer = null;
        if (!a.BupoLayer.Equals("analysis", StringComparison.OrdinalIgnoreCase))
        {
            if (!int.TryParse(a.BupoLayer, NumberStyles.Integer, CultureInfo.InvariantCulture, out var kk) || kk < 0)
                throw new BupoException($"--bupo-layer must be 'analysis' or a block number >= 0, got '{a.BupoLayer}'");
            fixedLayer = kk;
        }
        var p = (a.Quick ? DemoProfile.Quick : DemoProfile.Default).With(a);
        if (fixedLayer >= p.Model.Layers) throw new BupoException($"--bupo-layer {fixedLayer} is outside the demo model's blocks 0..{p.Model.Layers - 1}");
        var device = ModelDevice.Parse(a.Device);
        TorchRuntime.EnsureInitialized();
        if (a.TrainThreads > 0) torch.set_num_threads(a.TrainThreads);

        var total = Stopwatch.StartNew();
        var outDir = Path.GetFullPath(a.Out);
        Directory.CreateDirectory(outDir);
        var seed = (ulong)a.Seed;
        var cacheDir = Path.Combine(Path.GetFullPath(a.WorkDir), $"{p.Name}-{p.Model.CacheKey}-sft{p.SftSteps}x{p.SftBatch}-v{SftTrainer.RecipeVersion}-steps{p.Tasks.MaxSteps}{(p.Tasks.RlFraction > 0 ? $"-rl{p.Tasks.RlFraction.ToString(CultureInfo.InvariantCulture)}" : "")}{(p.SftDroppedStepShare > 0 ? $"-drop{p.SftDroppedStepShare.ToString(CultureInfo.InvariantCulture)}" : "")}-seed{a.Seed}");
        Directory.CreateDirectory(cacheDir);
        var stages = new List<(string Stage, double Seconds, string Note)>();
        void Stage(string name, string note, Stopwatch sw)
        {
            lock (console)
            {
                stages.Add((name, sw.Elapsed.TotalSeconds, note));
                console.MarkupLineInterpolated($"[green]✓[/] {name}: {note} ({sw.Elapsed.TotalSeconds:0.0} s)");
            }
        }
        console.MarkupLineInterpolated($"[bold]bupo-hybrid demo[/] ({p.Name}): {p.Model}");
        console.MarkupLineInterpolated($"work dir {cacheDir}; report {outDir}");

        // ---- data: train prompts for RL, held-out problems for eval and analysis
        var gen = new ArithmeticTaskGenerator(seed * 1000 + 17, p.Tasks);
        // RL prompts come from their own split when the profile has one: problems the SFT never saw, as the held-out ones.
        var rlSplit = p.Tasks.RlFraction > 0 ? TaskSplit.Rl : TaskSplit.Train;
        var rlPrompts = gen.GenerateDistinct(p.RlTrainPrompts, rlSplit).Select((t, i) => t.ToPromptItem($"rl-{i}")).ToList();
        var heldTasks = new ArithmeticTaskGenerator(seed * 1000 + 777, p.Tasks).GenerateDistinct(p.EvalProblems, TaskSplit.HeldOut);
        var heldOut = heldTasks.Select((t, i) => t.ToPromptItem($"heldout-{i}")).ToList();
        ArithmeticTaskGenerator.WriteJsonl(Path.Combine(outDir, "heldout.jsonl"), heldTasks, "heldout");

        // ---- stage 1: SFT (cached)
        var sw = Stopwatch.StartNew();
        var initGguf = Path.Combine(cacheDir, "init.gguf");
        var sftGguf = Path.Combine(cacheDir, "sft.gguf");
        var sftCsv = Path.Combine(cacheDir, "sft_metrics.csv");
        if (a.Force || !File.Exists(sftGguf) || !File.Exists(sftCsv) || !File.Exists(initGguf))
        {
            foreach (var f in new[] { sftGguf, sftCsv }) if (File.Exists(f)) File.Delete(f);
            p.Model.WriteRandomGguf(initGguf, seed);
            using var model = TransformerModel.FromGguf(initGguf, device);
            var every = Math.Max(1, p.SftSteps / 10);
            var history = SftTrainer.Train(model, new SftOptions
            {
                Steps = p.SftSteps, BatchSize = p.SftBatch, LearningRate = p.SftLr, WarmupSteps = Math.Min(30, p.SftSteps / 10), Seed = seed, Tasks = p.Tasks,
                DroppedStepShare = p.SftDroppedStepShare,
            }, s =>
            {
                if (s.Step == 1 || s.Step % every == 0)
                    console.MarkupLineInterpolated($"  SFT step {s.Step}/{p.SftSteps}: loss {s.Loss:0.000}, token accuracy {s.TokenAccuracy:0.000}, lr {s.LearningRate:0.0000} ({s.Seconds:0} s)");
            });
            var sb = new StringBuilder("step,loss,token_accuracy,lr,seconds\n");
            foreach (var s in history) sb.AppendLine(Csv(s.Step, s.Loss, s.TokenAccuracy, s.LearningRate, s.Seconds));
            ModelExporter.Export(model, initGguf, sftGguf + ".tmp", GgmlType.F32);
            File.Move(sftGguf + ".tmp", sftGguf, overwrite: true);
            AtomicFile.WriteAllText(sftCsv, sb.ToString());
            Stage("SFT", $"{p.SftSteps} steps x {p.SftBatch} problems, final loss {history[^1].Loss:0.000}", sw);
        }
        else Stage("SFT", $"reused cached model {sftGguf} (--force retrains)", sw);
        File.Copy(sftCsv, Path.Combine(outDir, "sft_metrics.csv"), overwrite: true);

        // ---- stage 2: analysis of the SFT model
        sw.Restart();
        var analysisIds = heldOut.Take(p.AnalysisPrompts).Select(i => CharVocabulary.Encode(ArithmeticTaskGenerator.FormatPrompt(i.Problem))).ToList();
        AnalysisResult Analyze(string gguf, string name)
        {
            var r = InternalEntropyAnalyzer.Run(new AnalyzeOptions
            {
                ModelPath = gguf, GenerateTokens = p.MaxResponseTokens, Positions = AnalysisPositions.Response, Device = a.Device,
                Threads = a.Threads, GpuLayers = 0, Seed = (uint)seed, ContextSize = p.Model.ContextLength,
            }, analysisIds);
            AnalysisReportWriter.WriteAll(r, outDir, name, perTokenInJson: false);
            return r;
        }
        var sftAnalysis = Analyze(sftGguf, "analysis_sft");
        var (k, kReason) = ChooseLayer(fixedLayer, sftAnalysis.BoundaryLayer, p.Model.Layers);
        Stage("analyze SFT", $"boundary layer {sftAnalysis.BoundaryLayer} ({sftAnalysis.BoundaryLayerReason}); BuPO trains block k = {k} ({kReason})", sw);

        // ---- stages 3-4: GRPO and BuPO from the same checkpoint, same seeds and budgets
        (TrainingResult Result, Stopwatch Clock) Train(string name, int? bupoLayer)
        {
            var dir = Path.Combine(outDir, name);
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
            var o = new TrainOptions
            {
                Model = sftGguf, Output = dir, Steps = p.RlSteps, PromptsPerStep = p.RlPromptsPerStep, SamplesPerPrompt = p.RlSamplesPerPrompt,
                MaxResponseTokens = p.MaxResponseTokens, Parallel = Math.Min(RolloutEngine.MaxParallel, p.RlPromptsPerStep * p.RlSamplesPerPrompt), ContextSize = 0, Threads = a.Threads,
                TrainThreads = a.TrainThreads, Lr = p.RlLr, RolloutQuant = "F32", CheckpointEvery = 0, Seed = a.Seed, Device = a.Device,
                MiniBatchPrompts = p.RlMiniBatchPrompts, PpoEpochs = p.RlPpoEpochs, BupoLayer = bupoLayer?.ToString(CultureInfo.InvariantCulture),
                BupoSteps = bupoLayer != null ? p.BupoSteps : null, PromptTemplate = "raw",
            };
            var stepWatch = Stopwatch.StartNew();
            var result = TrainingRun.Run(o, new MathReward(), rlPrompts, new Observer(console, name, p.RlSteps), services: new TrainingServices
            {
                FormatPrompt = (item, _) => ArithmeticTaskGenerator.FormatPrompt(item.Problem),
            });
            stepWatch.Stop();
            return (result, stepWatch);
        }
        void TrainStage(string name, (TrainingResult Result, Stopwatch Clock) run, int? bupoLayer) =>
            Stage(name, $"{p.RlSteps} steps x {p.RlPromptsPerStep} prompts x {p.RlSamplesPerPrompt} samples{(bupoLayer != null ? $", IPA on block {bupoLayer} for {p.BupoSteps} steps" : "")}; last reward {run.Result.Steps[^1].RewardMean:0.000}", run.Clock);
        // Side by side on two or more cores: each run is one torch and one llama.cpp thread and shares no state (no torch
        // RNG, own models, contexts and run folders), so the results are those of one after the other. (Two loops in one
        // process used to abort natively: TorchSharp's temporary Scalars, now a compile error, see BUPO002.)
        (TrainingResult Result, Stopwatch Clock) grpoRun, bupoRun;
        if (Environment.ProcessorCount >= 2)
        {
            var runs = new[] { Task.Run(() => Train("grpo", null)), Task.Run(() => Train("bupo", k)) };
            try { Task.WaitAll(runs); }
            catch (AggregateException e) { System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerExceptions[0]).Throw(); throw; }
            (grpoRun, bupoRun) = (runs[0].Result, runs[1].Result);
        }
        else
        {
            grpoRun = Train("grpo", null);
            bupoRun = Train("bupo", k);
        }
        // Recorded in a fixed order (each with its own run time), whichever finished first.
        TrainStage("grpo", grpoRun, null);
        TrainStage("bupo", bupoRun, k);
        var (grpo, bupo) = (grpoRun.Result, bupoRun.Result);

        // ---- stage 5: evaluation on the held-out split
        sw.Restart();
        var models = new (string Name, string Gguf)[] { ("init (untrained)", initGguf), ("SFT", sftGguf), ("GRPO", grpo.SamplerGguf), ("BuPO", bupo.SamplerGguf) };
        // The problems as the model sees them (the demo's "Q: ...\nA: " format) under the raw template, as in training.
        var heldOutPrompts = heldOut.Select(i => i with { Problem = ArithmeticTaskGenerator.FormatPrompt(i.Problem) }).ToList();
        var heldSteps = heldTasks.Select(t => t.Steps).ToList();
        // llama.cpp only (no torch): two evaluations side by side on two or more cores, one thread each.
        Parallel.ForEach(models, new ParallelOptions { MaxDegreeOfParallelism = Math.Clamp(Environment.ProcessorCount, 1, 2) }, m =>
        {
            var r = Evaluate(m.Gguf, heldOutPrompts, heldSteps, p, a);
            AtomicFile.WriteAllText(Path.Combine(outDir, EvalFile(m.Name)), JsonSerializer.Serialize(r, Json));
            lock (console) console.MarkupLineInterpolated($"  eval {m.Name}: avg@{p.EvalK} {r.AvgAtK:0.000} ({r.Seconds:0.0} s)");
        });
        Stage("evaluate", $"{heldOut.Count} held-out problems x {p.EvalK} samples at T = 1", sw);

        // ---- stage 5b: block k's internal policy evaluated as a policy (what BuPO's IPA phase trains)
        sw.Restart();
        var layerProblems = heldOutPrompts.Take(p.LayerEvalProblems).ToList();
        var layerRows = new List<(string Model, double AvgAtK, double PassK)>();
        foreach (var (name, gguf) in models.Skip(1))
        {
            var r = EvaluateLayer(gguf, layerProblems, heldSteps, k, p, a);
            AtomicFile.WriteAllText(Path.Combine(outDir, "layer_" + EvalFile(name)), JsonSerializer.Serialize(r, Json));
            layerRows.Add((name, r.AvgAtK, r.PassAtK[p.LayerEvalK.ToString(CultureInfo.InvariantCulture)]));
            console.MarkupLineInterpolated($"  layer-{k} policy of {name}: avg@{p.LayerEvalK} {r.AvgAtK:0.000} ({r.Seconds:0.0} s)");
        }
        Stage($"evaluate layer {k}", $"block {k}'s internal policy softmax(h_{k} E_u^T), {layerProblems.Count} problems x {p.LayerEvalK} samples (torch)", sw);

        // ---- stage 6: analysis after training
        sw.Restart();
        var grpoAnalysis = Analyze(grpo.SamplerGguf, "analysis_grpo");
        var bupoAnalysis = Analyze(bupo.SamplerGguf, "analysis_bupo");
        Stage("analyze trained", "GRPO and BuPO models", sw);

        // ---- stage 7: report, from the metrics files
        sw.Restart();
        var rows = models.Select(m =>
        {
            var file = EvalFile(m.Name);
            using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, file)));
            var e = doc.RootElement;
            var pass = e.GetProperty("pass_at_k");
            return new ResultRow(m.Name, e.GetProperty("avg_at_k").GetDouble(), pass.GetProperty("1").GetDouble(),
                pass.GetProperty(p.EvalK.ToString(CultureInfo.InvariantCulture)).GetDouble(), e.GetProperty("finished_share").GetDouble(), file)
            {
                AvgAtKBySteps = e.GetProperty("avg_at_k_by_steps").EnumerateObject().ToDictionary(x => x.Name, x => x.Value.GetDouble()),
                ShortShare = e.GetProperty("short_share").GetDouble(),
            };
        }).ToList();
        AtomicFile.WriteAllText(Path.Combine(outDir, "results.json"), JsonSerializer.Serialize(new { k = p.EvalK, bupo_layer = k, rows }, Json));
        var csv = new StringBuilder($"model,avg_at_{p.EvalK},pass_at_1,pass_at_{p.EvalK},finished_share\n");
        foreach (var r in rows) csv.AppendLine($"{r.Model},{Csv(r.AvgAtK, r.Pass1, r.PassK, r.FinishedShare)}");
        AtomicFile.WriteAllText(Path.Combine(outDir, "results.csv"), csv.ToString());
        var grpoSteps = MetricsWriter.ReadSteps(Path.Combine(outDir, "grpo", "metrics.jsonl"));
        var bupoSteps = MetricsWriter.ReadSteps(Path.Combine(outDir, "bupo", "metrics.jsonl"));
        // The curves `bupo-hybrid report` draws, from the same code.
        var runCurves = new[] { RunCurves.Read(Path.Combine(outDir, "grpo"), "GRPO"), RunCurves.Read(Path.Combine(outDir, "bupo"), "BuPO") };
        RunReport.SavePlot(Path.Combine(outDir, "reward_curves.png"), RunReport.Curves.Single(c => c.File == "reward"), runCurves);
        RunReport.SavePlot(Path.Combine(outDir, "accuracy_curves.png"), RunReport.Curves.Single(c => c.File == "accuracy"), runCurves);
        SaveEntropy(Path.Combine(outDir, "layer_entropy.png"), sftAnalysis, grpoAnalysis, bupoAnalysis, k);
        stages.Add(("report", sw.Elapsed.TotalSeconds, ""));
        AtomicFile.WriteAllText(Path.Combine(outDir, "stages.json"), JsonSerializer.Serialize(stages.Select(s => new { stage = s.Stage, seconds = s.Seconds, note = s.Note }), Json));
        AtomicFile.WriteAllText(Path.Combine(outDir, "report.md"), Report(p, a, k, sftAnalysis, grpoAnalysis, bupoAnalysis, rows, layerRows, grpoSteps, bupoSteps, stages, total.Elapsed.TotalSeconds,
            heldTasks.Select(t => t.Expression).Distinct().Count()));
        Stage("report", Path.Combine(outDir, "report.md"), sw);

        var table = new Table().AddColumns("model", $"avg@{p.EvalK}", "pass@1", $"pass@{p.EvalK}", "finished");
        foreach (var r in rows) table.AddRow(r.Model, F(r.AvgAtK), F(r.Pass1), F(r.PassK), F(r.FinishedShare));
        console.Write(table);
        console.MarkupLineInterpolated($"held-out: {heldOut.Count} problems, {p.EvalK} samples each at T = 1; BuPO block k = {k}; total {total.Elapsed.TotalSeconds:0} s");
        return 0;
    }

    /// <summary>One model's held-out evaluation as written to <c>eval_*.json</c>.</summary>
    public sealed record DemoEvalFile
    {
        [JsonPropertyName("model")] public required string Model { get; init; }
        [JsonPropertyName("problems")] public int Problems { get; init; }
        [JsonPropertyName("samples_per_problem")] public int SamplesPerProblem { get; init; }
        [JsonPropertyName("temperature")] public double Temperature { get; init; }
        /// <summary>avg@K: the mean over problems of the share of correct samples.</summary>
        [JsonPropertyName("avg_at_k")] public double AvgAtK { get; init; }
        /// <summary>Unbiased pass@k for k = 1, 2, 4, ... K.</summary>
        [JsonPropertyName("pass_at_k")] public required IReadOnlyDictionary<string, double> PassAtK { get; init; }
        /// <summary>Share of samples that ended with EOS (not cut at the token limit).</summary>
        [JsonPropertyName("finished_share")] public double FinishedShare { get; init; }
        /// <summary>Share of samples from which the verifier extracted an answer.</summary>
        [JsonPropertyName("answered_share")] public double AnsweredShare { get; init; }
        [JsonPropertyName("mean_response_tokens")] public double MeanResponseTokens { get; init; }
        /// <summary>avg@K over the problems of each operation count ("1", "2", ...).</summary>
        [JsonPropertyName("avg_at_k_by_steps")] public required IReadOnlyDictionary<string, double> AvgAtKBySteps { get; init; }
        /// <summary>Share of samples with fewer worked steps ("a+b=c") than the problem has operations: the flaw of the demonstrations that leave out the last step.</summary>
        [JsonPropertyName("short_share")] public double ShortShare { get; init; }
        [JsonPropertyName("seconds")] public double Seconds { get; init; }
        /// <summary>The first sample of the first problems.</summary>
        [JsonPropertyName("examples")] public required IReadOnlyList<DemoEvalExample> Examples { get; init; }
    }

    /// <summary>One sampled answer.</summary>
    public sealed record DemoEvalExample(
        [property: JsonPropertyName("problem")] string Problem,
        [property: JsonPropertyName("answer")] string Answer,
        [property: JsonPropertyName("response")] string Response,
        [property: JsonPropertyName("correct")] bool Correct);

    /// <summary>K samples per held-out problem at temperature 1 with llama.cpp, scored by the math verifier (RL's <see cref="Evaluator"/>).</summary>
    private static DemoEvalFile Evaluate(string gguf, IReadOnlyList<PromptItem> problems, IReadOnlyList<int> steps, DemoProfile p, DemoArgs a)
    {
        var clock = Stopwatch.StartNew();
        using var engine = new RolloutEngine(gguf, new RolloutEngineOptions { Parallel = 64, Threads = a.Threads, SamplingThreads = a.Threads, GpuLayers = 0 });
        var r = Evaluator.Run(engine, "heldout", problems, new EvalOptions
        {
            K = p.EvalK, Template = "raw", Seed = (ulong)a.Seed,
            Sampling = new RolloutSampling { Temperature = 1.0, MaxTokens = p.MaxResponseTokens },
        });
        return EvalFileOf(r, gguf, problems, steps, p.EvalK, clock);
    }

    /// <summary>An evaluation as written to <c>eval_*.json</c>.</summary>
    private static DemoEvalFile EvalFileOf(EvalResult r, string model, IReadOnlyList<PromptItem> problems, IReadOnlyList<int> steps, int k, Stopwatch clock)
    {
        var samples = r.Problems.Sum(x => x.Correct.Length);
        var shortSamples = r.Problems.Select((x, i) => x.Responses.Count(resp => resp.Count(c => c == '=') < steps[i])).Sum();
        return new DemoEvalFile
        {
            Model = model,
            Problems = problems.Count,
            SamplesPerProblem = k,
            Temperature = 1.0,
            AvgAtK = r.Score.AvgAtK,
            PassAtK = r.Score.PassAtKByK.ToDictionary(kv => kv.Key.ToString(CultureInfo.InvariantCulture), kv => kv.Value),
            FinishedShare = r.Problems.Sum(x => x.Finish.Count(f => f == FinishReason.EndOfSequence)) / (double)samples,
            AnsweredShare = r.Problems.Sum(x => x.Extracted.Count(e => e != null)) / (double)samples,
            MeanResponseTokens = r.Problems.Sum(x => x.ResponseTokens.Sum()) / (double)samples,
            AvgAtKBySteps = Enumerable.Range(0, r.Problems.Count).GroupBy(i => steps[i]).OrderBy(g => g.Key).ToDictionary(
                g => g.Key.ToString(CultureInfo.InvariantCulture), g => g.Average(i => r.Problems[i].Correct.Count(c => c) / (double)r.Problems[i].Correct.Length)),
            ShortShare = shortSamples / (double)samples,
            Seconds = clock.Elapsed.TotalSeconds,
            Examples = r.Problems.Take(12).Select((x, i) => new DemoEvalExample(problems[i].Problem, x.Reference, x.Responses[0], x.Correct[0])).ToList(),
        };
    }

    /// <summary>Block k's internal policy sampled with the torch engine (<see cref="TorchPolicySampler"/>), scored like <see cref="Evaluate"/>.</summary>
    private static DemoEvalFile EvaluateLayer(string gguf, IReadOnlyList<PromptItem> problems, IReadOnlyList<int> steps, int k, DemoProfile p, DemoArgs a)
    {
        var clock = Stopwatch.StartNew();
        using var engine = new RolloutEngine(gguf, new RolloutEngineOptions { Parallel = 1, Threads = a.Threads, SamplingThreads = a.Threads, GpuLayers = 0 });
        using var model = TransformerModel.FromGguf(gguf, ModelDevice.Parse(a.Device));
        var sampler = new TorchPolicySampler(model, engine.Tokenizer, k);
        var r = Evaluator.Run(engine, "heldout-layer", problems, new EvalOptions
        {
            K = p.LayerEvalK, Template = "raw", Seed = (ulong)a.Seed,
            Sampling = new RolloutSampling { Temperature = 1.0, MaxTokens = p.MaxResponseTokens },
        }, generator: sampler);
        return EvalFileOf(r, $"{gguf} (block {k}'s internal policy, torch)", problems, steps, p.LayerEvalK, clock);
    }

    public static string EvalFile(string model) => "eval_" + model.Split(' ')[0].ToLowerInvariant() + ".json";

    /// <summary>How the report prints a metric (the test compares it to the metrics files).</summary>
    public static string F(double v) => v.ToString("0.000", CultureInfo.InvariantCulture);

    private static string Pct(double share) => (100 * share).ToString("0", CultureInfo.InvariantCulture) + "%";

    private static string Csv(params object[] values) => string.Join(',', values.Select(v => Convert.ToString(v, CultureInfo.InvariantCulture)));

    private static string Report(DemoProfile p, DemoArgs a, int k, AnalysisResult sft, AnalysisResult grpo, AnalysisResult bupo, IReadOnlyList<ResultRow> rows,
        IReadOnlyList<(string Model, double AvgAtK, double PassK)> layerRows, IReadOnlyList<StepMetrics> grpoSteps, IReadOnlyList<StepMetrics> bupoSteps, IReadOnlyList<(string Stage, double Seconds, string Note)> stages, double seconds, int heldOutDistinct)
    {
        var sb = new StringBuilder();
        sb.AppendLine($"# bupo-hybrid demo ({p.Name})").AppendLine();
        sb.AppendLine($"A tiny character-level {p.Model} is fine-tuned (SFT) on generated arithmetic word problems with {(p.Tasks.MinSteps == p.Tasks.MaxSteps ? $"{p.Tasks.MaxSteps}" : $"{p.Tasks.MinSteps}-{p.Tasks.MaxSteps}")} operation(s) each{(p.SftDroppedStepShare > 0 ? $" ({Pct(p.SftDroppedStepShare)} of its demonstrations flawed: they leave out the last operation and box the amount before it)" : "")}, ");
        sb.AppendLine($"then trained from that same checkpoint with GRPO and with BuPO (IPA on block k = {k} for the first {p.BupoSteps} of {p.RlSteps} steps, then GRPO), ");
        sb.AppendLine($"with the same seed ({a.Seed}), prompts, group size ({p.RlSamplesPerPrompt}), learning rate ({p.RlLr.ToString(CultureInfo.InvariantCulture)}) and step budget. Device: {a.Device}.");
        sb.AppendLine(p.Tasks.RlFraction > 0
            ? $"RL prompts come from their own split ({Pct(p.Tasks.RlFraction)} of the expressions): problems the SFT never saw, as the held-out ones ({Pct(p.Tasks.HeldOutFraction)}); {p.RlMiniBatchPrompts} prompts per optimizer step."
            : $"RL prompts come from the SFT split; {p.RlMiniBatchPrompts} prompts per optimizer step.").AppendLine();
        sb.AppendLine("## Results (held-out split)").AppendLine();
        sb.AppendLine($"| model | avg@{p.EvalK} | pass@1 | pass@{p.EvalK} | finished |");
        sb.AppendLine("|---|---|---|---|---|");
        foreach (var r in rows) sb.AppendLine($"| {r.Model} | {F(r.AvgAtK)} | {F(r.Pass1)} | {F(r.PassK)} | {F(r.FinishedShare)} |");
        sb.AppendLine().AppendLine($"Problems: `heldout.jsonl` ({heldOutDistinct} distinct problems); {p.EvalK} samples per problem at temperature 1; numbers from `eval_*.json` (also `results.json`, `results.csv`).").AppendLine();
        var stepKeys = rows.SelectMany(r => r.AvgAtKBySteps.Keys).Distinct().OrderBy(x => int.Parse(x, CultureInfo.InvariantCulture)).ToList();
        sb.AppendLine($"By number of operations, and the share of samples that stop short (fewer worked steps than operations{(p.SftDroppedStepShare > 0 ? $": the flaw of {Pct(p.SftDroppedStepShare)} of the SFT demonstrations, which leave out the last step" : "")}):").AppendLine();
        sb.AppendLine("| model | " + string.Join(" | ", stepKeys.Select(x => $"avg@{p.EvalK}, {x} op.")) + " | stops short |");
        sb.AppendLine("|---|" + string.Concat(stepKeys.Select(_ => "---|")) + "---|");
        foreach (var r in rows) sb.AppendLine($"| {r.Model} | " + string.Join(" | ", stepKeys.Select(x => r.AvgAtKBySteps.TryGetValue(x, out var v) ? F(v) : "-")) + $" | {F(r.ShortShare)} |");
        sb.AppendLine();
        var sftRow = rows.First(r => r.Model == "SFT");
        foreach (var r in rows.Where(r => r.Model is "GRPO" or "BuPO"))
            sb.AppendLine($"- {r.Model} vs SFT: avg@{p.EvalK} {F(r.AvgAtK)} vs {F(sftRow.AvgAtK)} ({(r.AvgAtK > sftRow.AvgAtK ? "better" : r.AvgAtK < sftRow.AvgAtK ? "worse" : "equal")}).");
        sb.AppendLine().AppendLine($"## Block {k}'s internal policy as a policy").AppendLine();
        sb.AppendLine($"Sampling from softmax(h_{k} E_uᵀ) (no final norm: the distribution BuPO's IPA phase trains) with the torch engine, on the first {p.LayerEvalProblems} held-out problems x {p.LayerEvalK} samples at T = 1 (`layer_eval_*.json`):").AppendLine();
        sb.AppendLine($"| model | layer-{k} avg@{p.LayerEvalK} | layer-{k} pass@{p.LayerEvalK} |").AppendLine("|---|---|---|");
        foreach (var (model, avg, passK) in layerRows) sb.AppendLine($"| {model} | {F(avg)} | {F(passK)} |");
        sb.AppendLine().AppendLine("## Training curves").AppendLine();
        sb.AppendLine("![reward](reward_curves.png)").AppendLine().AppendLine("![accuracy](accuracy_curves.png)").AppendLine();
        sb.AppendLine($"Per-step metrics: `grpo/metrics.csv`, `bupo/metrics.csv` (also `.jsonl`); SFT: `sft_metrics.csv`. Final step reward: GRPO {F(grpoSteps[^1].RewardMean)}, BuPO {F(bupoSteps[^1].RewardMean)}.").AppendLine();
        sb.AppendLine("## Internal policy entropy per block").AppendLine();
        sb.AppendLine("![layer entropy](layer_entropy.png)").AppendLine();
        sb.AppendLine($"Boundary layer of the SFT model (analysis): {sft.BoundaryLayer} ({sft.BoundaryLayerReason}). After training: GRPO {grpo.BoundaryLayer}, BuPO {bupo.BoundaryLayer}.").AppendLine();
        sb.AppendLine("| block | H SFT | H GRPO | H BuPO |").AppendLine("|---|---|---|---|");
        for (var i = 0; i < sft.Layers.Count; i++)
            sb.AppendLine($"| {sft.Layers[i].Index} | {F(sft.Layers[i].Entropy)} | {F(grpo.Layers[i].Entropy)} | {F(bupo.Layers[i].Entropy)} |");
        sb.AppendLine().AppendLine("Full analyses: `analysis_{sft,grpo,bupo}.json/.csv` and their plots.").AppendLine();
        sb.AppendLine("## Stages").AppendLine().AppendLine("| stage | seconds | note |").AppendLine("|---|---|---|");
        foreach (var s in stages) sb.AppendLine($"| {s.Stage} | {s.Seconds:0.0} | {s.Note} |");
        sb.AppendLine().AppendLine($"Total: {seconds:0} s.");
        return sb.ToString();
    }

    private static void SaveEntropy(string path, AnalysisResult sft, AnalysisResult grpo, AnalysisResult bupo, int k)
    {
        var plot = new Plot();
        foreach (var (name, r) in new[] { ("SFT (before RL)", sft), ("GRPO", grpo), ("BuPO", bupo) })
        {
            var s = plot.Add.Scatter(r.Layers.Select(l => (double)l.Index).ToArray(), r.Layers.Select(l => l.Entropy).ToArray());
            s.LegendText = name;
        }
        var v = plot.Add.VerticalLine(k); v.LegendText = $"BuPO block k = {k}"; v.LinePattern = LinePattern.Dotted;
        plot.Title("Internal layer-policy entropy per block, before vs after RL"); plot.XLabel("block"); plot.YLabel("entropy (nats)");
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { IntegerTicksOnly = true };
        plot.ShowLegend(Alignment.UpperRight);
        var png = plot.GetImageBytes(800, 500, ImageFormat.Png);
        AtomicFile.Write(path, tmp => File.WriteAllBytes(tmp, png));
    }

    /// <summary>
    /// BuPO's block: the fixed one, else the SFT model's boundary layer when it is interior; when the rule picks the top
    /// block (every FFN still adds entropy: no integration phase in so small a model), IPA on it would train nearly the
    /// full policy, so the middle block ⌊L/2⌋ is used instead and the report says so.
    /// </summary>
    public static (int Layer, string Reason) ChooseLayer(int? fixedLayer, int boundary, int layers)
    {
        if (fixedLayer is { } f) return (f, "--bupo-layer");
        if (boundary < layers - 1) return (boundary, "the boundary layer");
        return (layers / 2, $"the boundary rule picks the top block {boundary}, which is nearly the full policy: the middle block instead");
    }

    private sealed class Observer(IAnsiConsole console, string name, int steps) : ITrainingObserver
    {
        public void OnStep(StepMetrics m, TrainOptions o)
        {
            lock (console) console.MarkupLineInterpolated(
                $"  {name} step {m.Step}/{steps} [[{m.Phase}]]: reward {m.RewardMean:0.000}, accuracy {m.Accuracy:0.000}, length {m.ResponseLengthMean:0.0}, {m.StepSeconds:0.0} s");
        }
    }
}
