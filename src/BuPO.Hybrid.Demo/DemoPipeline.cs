using BuPO.Hybrid.Reports;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using BuPO.Hybrid.Analysis;
using BuPO.Hybrid.Data;
using BuPO.Hybrid.Gguf;
using BuPO.Hybrid.Model;
using BuPO.Hybrid.RL.Training;
using TorchSharp;
using BuPO.Hybrid.Rollout;
using BuPO.Hybrid.RL.Evaluation;
using BuPO.Hybrid.RL.Rewards;

namespace BuPO.Hybrid.Demo;

/// <summary>Where a demo run reports its progress (the CLI renders it; tests may collect it).</summary>
public interface IDemoObserver
{
    /// <summary>The run's title line.</summary>
    void Heading(string text);

    /// <summary>A progress line (SFT and RL steps, evaluations).</summary>
    void Line(string text);

    /// <summary>A finished stage, with what it did and how long it took.</summary>
    void Stage(string name, string note, double seconds);
}

/// <summary>What a demo run ends with: the held-out table's rows and where the report is.</summary>
/// <param name="Rows">One row per model (init, SFT, GRPO, BuPO), as in results.json.</param>
/// <param name="BupoLayer">BuPO's block k.</param>
/// <param name="HeldOutProblems">Problems evaluated.</param>
/// <param name="K">Samples per problem.</param>
/// <param name="Seconds">Wall time of the run.</param>
/// <param name="OutDir">The report's folder.</param>
public sealed record DemoRunResult(IReadOnlyList<DemoPipeline.ResultRow> Rows, int BupoLayer, int HeldOutProblems, int K, double Seconds, string OutDir);

/// <summary>
/// The end-to-end demo on generated arithmetic word problems with a tiny character-level qwen3: SFT (cached in the work
/// dir) → internal-entropy analysis → GRPO and BuPO from the same SFT checkpoint (same seeds and budgets) → held-out
/// evaluation (avg@k, pass@k) → analysis of the trained models → Markdown report with plots.
/// </summary>
public static class DemoPipeline
{
    /// <summary>One row of the results table (results.json).</summary>
    public sealed record ResultRow(string Model, double AvgAtK, double Pass1, double PassK, double FinishedShare, string EvalFile)
    {
        /// <summary>avg@K per operation count, as in the eval file.</summary>
        public IReadOnlyDictionary<string, double> AvgAtKBySteps { get; init; } = new Dictionary<string, double>();
        /// <summary>Share of samples with fewer worked steps than operations.</summary>
        public double ShortShare { get; init; }
        /// <summary>Share of samples whose box holds the amount before their last worked step.</summary>
        public double StaleBoxShare { get; init; }
    }

    private static readonly JsonSerializerOptions Json = JsonFormat.Indented;

    /// <summary>A multi-seed study (<see cref="DemoSettings.Seeds"/>): the demo per seed into OUT/seed-N, then study.md; returns its path.</summary>
    public static string RunStudy(DemoSettings a, IDemoObserver observer)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(observer);
        if (a.Seeds is not { } list) throw new ArgumentException("no seeds", nameof(a));
        if (list.Length == 0 || list.Distinct().Count() != list.Length) throw new BupoException($"--seeds: give distinct seeds, e.g. 1,2,3");
        var outDir = Path.GetFullPath(a.Out);
        var results = new List<SeedResult>();
        foreach (var s in list)
        {
            var dir = Path.Combine(outDir, $"seed-{s}");
            Run(a with { Seed = s, Seeds = null, Out = dir }, observer);
            results.Add(SeedResult.Read(s, dir));
        }
        var p = DemoProfile.For(a);
        return SeedStudy.Write(results, outDir, p.EvalK);
    }

    /// <summary>
    /// One demo run: SFT (cached in the work dir) → analysis → GRPO and BuPO from the same checkpoint → held-out
    /// evaluation → block k's policy → analyses of the trained models → report.md and its files in <see cref="DemoSettings.Out"/>.
    /// Progress goes to <paramref name="observer"/> (from more than one thread, one call at a time).
    /// </summary>
    public static DemoRunResult Run(DemoSettings a, IDemoObserver observer)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(observer);
        var gate = new object();
        if (a.Threads < 1) throw new BupoException($"--threads must be >= 1, got {a.Threads}");
        if (a.TrainThreads < 0) throw new BupoException($"--train-threads must be >= 0, got {a.TrainThreads}");
        int? fixedLayer = null;
        if (!a.BupoLayer.Equals("analysis", StringComparison.OrdinalIgnoreCase))
        {
            if (!int.TryParse(a.BupoLayer, NumberStyles.Integer, CultureInfo.InvariantCulture, out var kk) || kk < 0)
                throw new BupoException($"--bupo-layer must be 'analysis' or a block number >= 0, got '{a.BupoLayer}'");
            fixedLayer = kk;
        }
        var p = DemoProfile.For(a);
        if (fixedLayer >= p.Model.Layers) throw new BupoException($"--bupo-layer {fixedLayer} is outside the demo model's blocks 0..{p.Model.Layers - 1}");
        var device = ModelDevice.Parse(a.Device);
        TorchRuntime.EnsureInitialized();
        if (a.TrainThreads > 0) torch.set_num_threads(a.TrainThreads);

        var total = Stopwatch.StartNew();
        var outDir = Path.GetFullPath(a.Out);
        Directory.CreateDirectory(outDir);
        var seed = (ulong)a.Seed;
        var cacheDir = Path.Combine(Path.GetFullPath(a.WorkDir), $"{p.Name}-{p.Model.CacheKey}-sft{p.SftSteps}x{p.SftBatch}-v{SftTrainer.RecipeVersion}-steps{p.Tasks.MaxSteps}{(p.Tasks.RlFraction > 0 ? $"-rl{p.Tasks.RlFraction.ToString(CultureInfo.InvariantCulture)}" : "")}{(p.HasSftFlaw ? $"-{p.SftFlaw.ToString().ToLowerInvariant()}{p.SftFlawShare.ToString(CultureInfo.InvariantCulture)}" : "")}-seed{a.Seed}");
        Directory.CreateDirectory(cacheDir);
        var stages = new List<(string Stage, double Seconds, string Note)>();
        void Stage(string name, string note, Stopwatch sw)
        {
            lock (gate)
            {
                stages.Add((name, sw.Elapsed.TotalSeconds, note));
                observer.Stage(name, note, sw.Elapsed.TotalSeconds);
            }
        }
        observer.Heading($"bupo-hybrid demo ({p.Name}): {p.Model}");
        observer.Line($"work dir {cacheDir}; report {outDir}");

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
                Flaw = p.SftFlaw, FlawShare = p.SftFlawShare,
            }, s =>
            {
                if (s.Step == 1 || s.Step % every == 0)
                    observer.Line($"  SFT step {s.Step}/{p.SftSteps}: loss {s.Loss:0.000}, token accuracy {s.TokenAccuracy:0.000}, lr {s.LearningRate:0.0000} ({s.Seconds:0} s)");
            });
            var sb = new StringBuilder("step,loss,token_accuracy,lr,seconds\n");
            foreach (var s in history) sb.AppendLine(Csv(s.Step, s.Loss, s.TokenAccuracy, s.LearningRate, s.Seconds));
            ModelExporter.Export(model, initGguf, sftGguf, GgmlType.F32); // atomic: a temp name beside it, then a rename
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
            var result = TrainingRun.Run(o, new MathReward(), rlPrompts, new StepLines(observer, gate, name, p.RlSteps), services: new TrainingServices
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
            lock (gate) observer.Line($"  eval {m.Name}: avg@{p.EvalK} {r.AvgAtK:0.000} ({r.Seconds:0.0} s)");
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
            observer.Line($"  layer-{k} policy of {name}: avg@{p.LayerEvalK} {r.AvgAtK:0.000} ({r.Seconds:0.0} s)");
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
                StaleBoxShare = e.GetProperty("stale_box_share").GetDouble(),
            };
        }).ToList();
        AtomicFile.WriteAllText(Path.Combine(outDir, "results.json"), JsonSerializer.Serialize(new { k = p.EvalK, bupo_layer = k, rows }, Json));
        var csv = new StringBuilder($"model,avg_at_{p.EvalK},pass_at_1,pass_at_{p.EvalK},finished_share\n");
        foreach (var r in rows) csv.AppendLine(CultureInfo.InvariantCulture, $"{r.Model},{Csv(r.AvgAtK, r.Pass1, r.PassK, r.FinishedShare)}");
        AtomicFile.WriteAllText(Path.Combine(outDir, "results.csv"), csv.ToString());
        var grpoSteps = MetricsWriter.ReadSteps(Path.Combine(outDir, "grpo", "metrics.jsonl"));
        var bupoSteps = MetricsWriter.ReadSteps(Path.Combine(outDir, "bupo", "metrics.jsonl"));
        // The curves `bupo-hybrid report` draws, from the same code.
        var runCurves = new[] { RunCurves.Read(Path.Combine(outDir, "grpo"), "GRPO"), RunCurves.Read(Path.Combine(outDir, "bupo"), "BuPO") };
        RunReport.SavePlot(Path.Combine(outDir, "reward_curves.png"), RunReport.Curves.Single(c => c.File == "reward"), runCurves);
        RunReport.SavePlot(Path.Combine(outDir, "accuracy_curves.png"), RunReport.Curves.Single(c => c.File == "accuracy"), runCurves);
        ComparisonPlots.EntropyPerBlock(Path.Combine(outDir, "layer_entropy.png"), [("SFT (before RL)", sftAnalysis), ("GRPO", grpoAnalysis), ("BuPO", bupoAnalysis)],
            k, $"BuPO block k = {k}", "Internal layer-policy entropy per block, before vs after RL");
        stages.Add(("report", sw.Elapsed.TotalSeconds, ""));
        AtomicFile.WriteAllText(Path.Combine(outDir, "stages.json"), JsonSerializer.Serialize(stages.Select(s => new { stage = s.Stage, seconds = s.Seconds, note = s.Note }), Json));
        AtomicFile.WriteAllText(Path.Combine(outDir, "report.md"), Report(p, a, k, sftAnalysis, grpoAnalysis, bupoAnalysis, rows, layerRows, grpoSteps, bupoSteps, stages, total.Elapsed.TotalSeconds,
            heldTasks.Select(t => t.Expression).Distinct().Count()));
        Stage("report", Path.Combine(outDir, "report.md"), sw);

        return new DemoRunResult(rows, k, heldOut.Count, p.EvalK, total.Elapsed.TotalSeconds, outDir);
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
        /// <summary>Share of samples whose box holds the amount before their last worked step (<see cref="ArithmeticTaskGenerator.HasStaleBox"/>): the flaw of the stale-box demonstrations.</summary>
        [JsonPropertyName("stale_box_share")] public double StaleBoxShare { get; init; }
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
    private static DemoEvalFile Evaluate(string gguf, IReadOnlyList<PromptItem> problems, IReadOnlyList<int> steps, DemoProfile p, DemoSettings a)
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
            StaleBoxShare = r.Problems.Sum(x => x.Responses.Count(ArithmeticTaskGenerator.HasStaleBox)) / (double)samples,
            Seconds = clock.Elapsed.TotalSeconds,
            Examples = r.Problems.Take(12).Select((x, i) => new DemoEvalExample(problems[i].Problem, x.Reference, x.Responses[0], x.Correct[0])).ToList(),
        };
    }

    /// <summary>Block k's internal policy sampled with the torch engine (<see cref="TorchPolicySampler"/>), scored like <see cref="Evaluate"/>.</summary>
    private static DemoEvalFile EvaluateLayer(string gguf, IReadOnlyList<PromptItem> problems, IReadOnlyList<int> steps, int k, DemoProfile p, DemoSettings a)
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

    private static string FlawText(DemoProfile p) => $"{Pct(p.SftFlawShare)} of the SFT demonstrations are flawed: " + (p.SftFlaw switch
    {
        DemonstrationFlaw.DropLastStep => "they leave out the last operation and box the amount before it",
        DemonstrationFlaw.StaleBox => "every step is worked out, but the box holds the amount before the last operation",
        _ => p.SftFlaw.ToString(),
    });

    private static string Pct(double share) => (100 * share).ToString("0", CultureInfo.InvariantCulture) + "%";

    private static string Csv(params object[] values) => string.Join(',', values.Select(v => Convert.ToString(v, CultureInfo.InvariantCulture)));

    private static string Report(DemoProfile p, DemoSettings a, int k, AnalysisResult sft, AnalysisResult grpo, AnalysisResult bupo, IReadOnlyList<ResultRow> rows,
        IReadOnlyList<(string Model, double AvgAtK, double PassK)> layerRows, IReadOnlyList<StepMetrics> grpoSteps, IReadOnlyList<StepMetrics> bupoSteps, IReadOnlyList<(string Stage, double Seconds, string Note)> stages, double seconds, int heldOutDistinct)
    {
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture, $"# bupo-hybrid demo ({p.Name})").AppendLine();
        sb.AppendLine(CultureInfo.InvariantCulture, $"A tiny character-level {p.Model} is fine-tuned (SFT) on generated arithmetic word problems with {(p.Tasks.MinSteps == p.Tasks.MaxSteps ? $"{p.Tasks.MaxSteps}" : $"{p.Tasks.MinSteps}-{p.Tasks.MaxSteps}")} operation(s) each{(p.HasSftFlaw ? $" ({FlawText(p)})" : "")}, ");
        sb.AppendLine(CultureInfo.InvariantCulture, $"then trained from that same checkpoint with GRPO and with BuPO (IPA on block k = {k} for the first {p.BupoSteps} of {p.RlSteps} steps, then GRPO), ");
        sb.AppendLine(CultureInfo.InvariantCulture, $"with the same seed ({a.Seed}), prompts, group size ({p.RlSamplesPerPrompt}), learning rate ({p.RlLr.ToString(CultureInfo.InvariantCulture)}) and step budget. Device: {a.Device}.");
        sb.AppendLine(p.Tasks.RlFraction > 0
            ? $"RL prompts come from their own split ({Pct(p.Tasks.RlFraction)} of the expressions): problems the SFT never saw, as the held-out ones ({Pct(p.Tasks.HeldOutFraction)}); {p.RlMiniBatchPrompts} prompts per optimizer step."
            : $"RL prompts come from the SFT split; {p.RlMiniBatchPrompts} prompts per optimizer step.").AppendLine();
        sb.AppendLine("## Results (held-out split)").AppendLine();
        sb.AppendLine(CultureInfo.InvariantCulture, $"| model | avg@{p.EvalK} | pass@1 | pass@{p.EvalK} | finished |");
        sb.AppendLine("|---|---|---|---|---|");
        foreach (var r in rows) sb.AppendLine(CultureInfo.InvariantCulture, $"| {r.Model} | {F(r.AvgAtK)} | {F(r.Pass1)} | {F(r.PassK)} | {F(r.FinishedShare)} |");
        sb.AppendLine().AppendLine(CultureInfo.InvariantCulture, $"Problems: `heldout.jsonl` ({heldOutDistinct} distinct problems); {p.EvalK} samples per problem at temperature 1; numbers from `eval_*.json` (also `results.json`, `results.csv`).").AppendLine();
        var stepKeys = rows.SelectMany(r => r.AvgAtKBySteps.Keys).Distinct().OrderBy(x => int.Parse(x, CultureInfo.InvariantCulture)).ToList();
        sb.AppendLine("By number of operations, and the share of samples that stop short (fewer worked steps than operations) or box a stale amount (the one before their last worked step)"
            + (p.HasSftFlaw ? $"; {FlawText(p)}:" : ":")).AppendLine();
        sb.AppendLine("| model | " + string.Join(" | ", stepKeys.Select(x => $"avg@{p.EvalK}, {x} op.")) + " | stops short | stale box |");
        sb.AppendLine("|---|" + string.Concat(stepKeys.Select(_ => "---|")) + "---|---|");
        foreach (var r in rows) sb.AppendLine(CultureInfo.InvariantCulture, $"| {r.Model} | {string.Join(" | ", stepKeys.Select(x => r.AvgAtKBySteps.TryGetValue(x, out var v) ? F(v) : "-"))} | {F(r.ShortShare)} | {F(r.StaleBoxShare)} |");
        sb.AppendLine();
        var sftRow = rows.First(r => r.Model == "SFT");
        foreach (var r in rows.Where(r => r.Model is "GRPO" or "BuPO"))
            sb.AppendLine(CultureInfo.InvariantCulture, $"- {r.Model} vs SFT: avg@{p.EvalK} {F(r.AvgAtK)} vs {F(sftRow.AvgAtK)} ({(r.AvgAtK > sftRow.AvgAtK ? "better" : r.AvgAtK < sftRow.AvgAtK ? "worse" : "equal")}).");
        sb.AppendLine().AppendLine(CultureInfo.InvariantCulture, $"## Block {k}'s internal policy as a policy").AppendLine();
        sb.AppendLine(CultureInfo.InvariantCulture, $"Sampling from softmax(h_{k} E_uᵀ) (no final norm: the distribution BuPO's IPA phase trains) with the torch engine, on the first {p.LayerEvalProblems} held-out problems x {p.LayerEvalK} samples at T = 1 (`layer_eval_*.json`):").AppendLine();
        sb.AppendLine(CultureInfo.InvariantCulture, $"| model | layer-{k} avg@{p.LayerEvalK} | layer-{k} pass@{p.LayerEvalK} |").AppendLine("|---|---|---|");
        foreach (var (model, avg, passK) in layerRows) sb.AppendLine(CultureInfo.InvariantCulture, $"| {model} | {F(avg)} | {F(passK)} |");
        sb.AppendLine().AppendLine("## Training curves").AppendLine();
        sb.AppendLine("![reward](reward_curves.png)").AppendLine().AppendLine("![accuracy](accuracy_curves.png)").AppendLine();
        sb.AppendLine(CultureInfo.InvariantCulture, $"Per-step metrics: `grpo/metrics.csv`, `bupo/metrics.csv` (also `.jsonl`); SFT: `sft_metrics.csv`. Final step reward: GRPO {F(grpoSteps[^1].RewardMean)}, BuPO {F(bupoSteps[^1].RewardMean)}.").AppendLine();
        sb.AppendLine("## Internal policy entropy per block").AppendLine();
        sb.AppendLine("![layer entropy](layer_entropy.png)").AppendLine();
        sb.AppendLine(CultureInfo.InvariantCulture, $"Boundary layer of the SFT model (analysis): {sft.BoundaryLayer} ({sft.BoundaryLayerReason}). After training: GRPO {grpo.BoundaryLayer}, BuPO {bupo.BoundaryLayer}.").AppendLine();
        sb.AppendLine("| block | H SFT | H GRPO | H BuPO |").AppendLine("|---|---|---|---|");
        for (var i = 0; i < sft.Layers.Count; i++)
            sb.AppendLine(CultureInfo.InvariantCulture, $"| {sft.Layers[i].Index} | {F(sft.Layers[i].Entropy)} | {F(grpo.Layers[i].Entropy)} | {F(bupo.Layers[i].Entropy)} |");
        sb.AppendLine().AppendLine("Full analyses: `analysis_{sft,grpo,bupo}.json/.csv` and their plots.").AppendLine();
        sb.AppendLine("## Stages").AppendLine().AppendLine("| stage | seconds | note |").AppendLine("|---|---|---|");
        foreach (var s in stages) sb.AppendLine(CultureInfo.InvariantCulture, $"| {s.Stage} | {s.Seconds:0.0} | {s.Note} |");
        sb.AppendLine().AppendLine(CultureInfo.InvariantCulture, $"Total: {seconds:0} s.");
        return sb.ToString();
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

    /// <summary>One progress line per RL step.</summary>
    private sealed class StepLines(IDemoObserver observer, object gate, string name, int steps) : ITrainingObserver
    {
        public void OnStep(StepMetrics m, TrainOptions o)
        {
            lock (gate) observer.Line(
                $"  {name} step {m.Step}/{steps} [{m.Phase}]: reward {m.RewardMean:0.000}, accuracy {m.Accuracy:0.000}, length {m.ResponseLengthMean:0.0}, {m.StepSeconds:0.0} s");
        }
    }
}
