using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using BuPO.Hybrid.Data;
using BuPO.Hybrid.Gguf;
using BuPO.Hybrid.Llama;
using BuPO.Hybrid.Model;
using TorchSharp;
using BuPO.Hybrid.Rollout;
using BuPO.Hybrid.RL.Algorithms;
using BuPO.Hybrid.RL.Rewards;

namespace BuPO.Hybrid.RL.Training;

/// <summary>Receives a run's progress. All members have empty defaults.</summary>
public interface ITrainingObserver
{
    /// <summary>A status line (loading, analysis, sync, checkpoint...).</summary>
    void OnMessage(string message) { }
    /// <summary>The boundary-layer analysis of <c>--bupo-layer auto</c> chose a layer.</summary>
    void OnLayerChosen(LayerAnalysis analysis) { }
    /// <summary>A step finished (its metrics are already written).</summary>
    void OnStep(StepMetrics metrics, TrainOptions options) { }
}

/// <summary>Replaceable parts of a run (tests, the demo).</summary>
public sealed record TrainingServices
{
    /// <summary>Makes the sampler for a GGUF (default: <see cref="RolloutEngineSampler.Create"/> with the options' engine settings).</summary>
    public Func<string, TrainOptions, IRolloutSampler>? SamplerFactory { get; init; }
    /// <summary>Turns a prompt into the text the model continues (default: <see cref="IRolloutSampler.FormatPrompt"/> with --prompt-template).</summary>
    public Func<PromptItem, IRolloutSampler, string>? FormatPrompt { get; init; }
}

/// <summary>The outcome of <see cref="TrainingRun.Run"/>.</summary>
public sealed record TrainingResult
{
    public required string OutputDir { get; init; }
    /// <summary>The metrics of the steps run in this call (a resumed run: only the new ones).</summary>
    public required IReadOnlyList<StepMetrics> Steps { get; init; }
    /// <summary>The last step completed (counting steps before a resume).</summary>
    public int LastStep { get; init; }
    /// <summary>BuPO's block k, or null for GRPO.</summary>
    public int? BupoLayer { get; init; }
    /// <summary>The analysis of --bupo-layer auto (null otherwise, and on resume).</summary>
    public LayerAnalysis? LayerAnalysis { get; init; }
    /// <summary>The GGUF the sampler had at the end (the trained model as --rollout-quant after the final sync; the source model in LoRA runs).</summary>
    public required string SamplerGguf { get; init; }
    /// <summary>LoRA runs: the adapter GGUF of the final sync (apply it to <see cref="SamplerGguf"/>).</summary>
    public string? LoraAdapter { get; init; }
    public string? LastCheckpoint { get; init; }
    /// <summary>True when the run stopped early on cancellation (after saving a checkpoint).</summary>
    public bool Cancelled { get; init; }
    public string MetricsJsonl => Path.Combine(OutputDir, "metrics.jsonl");
    public string MetricsCsv => Path.Combine(OutputDir, "metrics.csv");
}

/// <summary>
/// The training loop of <c>bupo-hybrid train</c>, callable as a library. Per step: sample the step's prompts (seeded
/// epoch permutations), roll out G responses each with the quantized sampler, score them, compute group advantages,
/// update the full-precision model (<see cref="GrpoTrainer"/>: IPA on block k for steps ≤ bupo-steps, then GRPO), export
/// the weights to --rollout-quant and reload the sampler every sync-every steps, write metrics, checkpoint every N
/// steps. Cancellation (Ctrl+C) stops at the next safe point and saves a checkpoint of the last completed step.
/// </summary>
public static class TrainingRun
{
    /// <summary>The reward of --reward (math or command).</summary>
    public static IRewardFunction CreateReward(TrainOptions o) => o.Reward switch
    {
        RewardKind.Command => new ExternalCommandReward(o.RewardCommand!),
        _ => new MathReward(),
    };

    /// <summary>Runs (or, with --resume, continues) a training run.</summary>
    /// <param name="options">Settings (validated here).</param>
    /// <param name="reward">Scores responses.</param>
    /// <param name="prompts">Training prompts; null: load --dataset.</param>
    /// <param name="observer">Progress callbacks.</param>
    /// <param name="ct">Stops the run at the next safe point, after a checkpoint.</param>
    /// <param name="services">Replaceable parts (sampler factory, prompt formatting).</param>
    /// <exception cref="BupoException">Bad settings or inputs (nothing is written then), or a failure during the run.</exception>
    public static TrainingResult Run(TrainOptions options, IRewardFunction reward, IReadOnlyList<PromptItem>? prompts = null,
        ITrainingObserver? observer = null, CancellationToken ct = default, TrainingServices? services = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(reward);
        observer ??= new NullObserver();
        services ??= new TrainingServices();
        // ---- everything checked before anything is written
        options.Validate(needDataset: prompts == null);
        var o = options.Resolved();
        if (!File.Exists(o.Model)) throw new BupoException($"--model: file not found: {o.Model}");
        LlamaModel.ValidateGgufMagic(o.Model!);
        // TransformerConfig.FromGguf (inside) names an unsupported architecture, then checks the metadata (GgufModelValidator).
        var shape = ModelShape.FromGguf(o.Model!);
        var config = shape.Config;
        // --memory: the plan is checked before the model loads, so a run that cannot fit stops here with the way out.
        if (o.MemoryBytes is { } budget) CheckMemory(MemoryPlan.Compute(shape, o), budget, o.Memory!);
        if (o.FixedBupoLayer is { } fixedK && fixedK >= config.LayerCount)
            throw new BupoException($"--bupo-layer {fixedK} is outside the model's blocks 0..{config.LayerCount - 1} ({Path.GetFileName(o.Model)} has {config.LayerCount})");
        if (!WeightSync.TypeNames.Contains(o.RolloutQuant, StringComparer.OrdinalIgnoreCase))
            throw new BupoException($"--rollout-quant: unknown type '{o.RolloutQuant}'; one of: {string.Join(", ", WeightSync.TypeNames)}");
        prompts ??= PromptDataset.Load(o.Dataset!, o.Split, o.Limit, new PromptDatasetOptions { DataDir = o.DataDir, ProblemField = o.Field, AnswerField = o.AnswerField });
        if (prompts.Count == 0) throw new BupoException("no training prompts");
        if (o.Limit is { } lim && prompts.Count > lim) prompts = prompts.Take(lim).ToList();
        // Every prompt must give what the reward needs, before anything is written (not at whichever step first samples it).
        if (reward is MathReward && prompts.FirstOrDefault(p => p.Answer == null) is { } noAnswer)
            throw new BupoException($"{(noAnswer.Source.Length > 0 ? $"{noAnswer.Source}:{noAnswer.Line}" : $"prompt '{noAnswer.Id}'")}: no reference answer, which --reward math needs (name the field with --answer-field, or use --reward command)");
        var outputDir = Path.GetFullPath(o.Output);
        var checkpointsDir = Path.Combine(outputDir, "checkpoints");
        if (File.Exists(outputDir)) throw new BupoException($"--output {o.Output}: is a file, not a folder");

        // ---- the run folder is ours from here: locked, and left as it was if the start fails
        var createdFolder = !Directory.Exists(outputDir);
        Directory.CreateDirectory(outputDir);
        var lockExisted = File.Exists(Path.Combine(outputDir, RunFolderLock.FileName));
        RunFolderLock runLock;
        try { runLock = RunFolderLock.Acquire(outputDir); }
        catch
        {
            if (createdFolder) TryDeleteEmptyFolder(outputDir);
            throw;
        }
        var started = false;
        try
        {
            if (runLock.TakenOverFrom is { } dead) observer.OnMessage($"note: took over the lock of a run that is no longer running ({dead})");
            return RunLocked(o, reward, prompts, observer, ct, services, config, outputDir, checkpointsDir, () => started = true);
        }
        finally
        {
            if (!started && createdFolder)
            {
                runLock.DisposeAndDelete();
                TryDeleteEmptyFolder(outputDir);
            }
            else if (!started && !lockExisted) runLock.DisposeAndDelete();
            else runLock.Dispose();
        }
    }

    /// <summary>
    /// Throws a one-line <see cref="BupoException"/> when <paramref name="plan"/> exceeds <paramref name="budget"/>, naming what
    /// would make it fit (<see cref="MemoryPlan.Advise"/>).
    /// </summary>
    public static void CheckMemory(MemoryPlan plan, long budget, string budgetText)
    {
        ArgumentNullException.ThrowIfNull(plan);
        if (plan.PeakBytes <= budget) return;
        var advice = plan.Advise(budget);
        var way = advice.Count == 0
            ? "no option or combination tried makes it fit (a smaller model, or more memory)"
            : "it fits with " + string.Join(", or ", advice.Select(a => $"{a.Options} ({ByteSize.Format(a.PeakBytes)})"));
        throw new BupoException($"--memory {budgetText}: the memory plan needs {ByteSize.Format(plan.PeakBytes)} ({(plan.Device == MemoryDevice.Cpu ? "RAM" : "GPU memory")}, peak in the {MemoryPlan.PhaseName(plan.PeakPhase)} phase), more than {ByteSize.Format(budget)}; {way} (details: bupo-hybrid plan)");
    }

    /// <summary>Options that may differ from the checkpoint's on resume: they change neither the data, the sampling nor the math of a step.</summary>
    public static IReadOnlySet<string> MayChangeOnResume { get; } = new HashSet<string>(StringComparer.Ordinal)
    {
        "steps", "checkpoint-every", "keep-checkpoints", "threads", "train-threads", "device", "gpu-layers", "llama-lib-dir", "tensor-board", "output", "resume", "memory",
        // Where the sampler's memory goes between rollouts, not what it samples (and absent from older checkpoints).
        "sampler-sleep", "offload-sampler",
    };

    /// <summary>The settings of <paramref name="current"/> that differ from a checkpoint's (name, checkpoint value, current value), all of them.</summary>
    public static IReadOnlyList<(string Name, string Before, string After)> SettingChanges(JsonObject checkpointOptions, TrainOptions current)
    {
        ArgumentNullException.ThrowIfNull(checkpointOptions);
        // Compared in canonical form: a choice spelt differently (bfloat16, BF16) is the same setting.
        checkpointOptions = TrainConfig.Canonical(checkpointOptions);
        var now = JsonNode.Parse(TrainConfig.ToJson(current))!.AsObject();
        var changes = new List<(string, string, string)>();
        foreach (var (name, value) in now)
        {
            var before = checkpointOptions[name]?.ToJsonString() ?? "null";
            var after = value?.ToJsonString() ?? "null";
            if (!checkpointOptions.ContainsKey(name) || before != after) changes.Add((name, before, after));
        }
        return changes;
    }

    private static TrainingResult RunLocked(TrainOptions o, IRewardFunction reward, IReadOnlyList<PromptItem> prompts, ITrainingObserver observer,
        CancellationToken ct, TrainingServices services, TransformerConfig config, string outputDir, string checkpointsDir, Action markStarted)
    {
        // ---- set-up: the checkpoint resumed (if any), model, sampler, prompts, BuPO layer, trainer
        var (resume, changed) = ResumeOf(o, checkpointsDir);
        var samplerDir = Path.Combine(outputDir, "sampler");

        // ---- model, sampler
        TorchRuntime.EnsureInitialized();
        if (o.TrainThreads > 0) torch.set_num_threads(o.TrainThreads);
        var device = ModelDevice.Parse(o.Device);
        var precision = o.Dtype;
        observer.OnMessage($"loading {o.Model} ({config.Architecture}, {config.LayerCount} blocks) for training on {o.Device} ({ModelDevice.PrecisionName(o.Dtype)})");
        if (precision == TrainPrecision.BFloat16Pure) observer.OnMessage(TrainPrecisionTypes.PureBf16Warning);
        using var model = TransformerModel.FromGguf(o.Model!, device, precision);
        // The frozen reference never updates: it needs no float32 masters to compute what the policy computed at the start.
        using var reference = o.KlCoef > 0 ? TransformerModel.FromGguf(o.Model!, device, precision.FrozenEquivalent()) : null;
        if (reference != null) foreach (var p in reference.TrainableParameters()) p.requires_grad = false;

        using var lora = o.LoraRank > 0 ? LoraSet.Create(model, o.LoraRank, o.LoraAlpha, o.LoraTargets.Length > 0 ? o.LoraTargets : null, SplitMix64.Derive((ulong)o.Seed, 0x6C6F7261)) : null;
        if (lora != null) observer.OnMessage($"LoRA rank {lora.Rank}, alpha {lora.Alpha}: {lora.AdaptedWeights.Count()} adapted weights, {lora.Parameters.Sum(p => p.Value.numel())} trainable parameters");
        var samplerGguf = resume?.SamplerGguf ?? o.Model!;
        var samplerIsSource = resume?.SamplerGguf == null;
        if (lora != null && !samplerIsSource) throw new BupoException($"--resume: {resume!.Directory} is a full fine-tuning checkpoint; it cannot continue as a LoRA run");
        var samplerLora = resume?.SamplerLora;
        if (lora == null && samplerLora != null) throw new BupoException($"--resume: {resume!.Directory} is a LoRA checkpoint; give the same --lora-rank to continue it");
        var factory = services.SamplerFactory ?? RolloutEngineSampler.Create;
        using var sampler = factory(samplerGguf, o);
        if (samplerLora != null) sampler.SetLora(samplerLora);
        if (sampler.Tokenizer.VocabSize != config.VocabSize)
            throw new BupoException($"the sampler's vocabulary ({sampler.Tokenizer.VocabSize}) differs from the model's ({config.VocabSize})");

        // ---- prompt tokens, BuPO layer
        var promptTokens = EncodePrompts(prompts, services.FormatPrompt ?? ((item, s) => s.FormatPrompt(o.PromptTemplate, item.Problem)), sampler, o.MaxPromptTokens);
        var (layer, analysis) = ResolveLayer(o, resume, promptTokens, sampler, model, observer, ct);
        if (layer is { } lk && lk >= config.LayerCount)
            throw new BupoException($"--bupo-layer {lk} is outside the model's blocks 0..{config.LayerCount - 1}");
        var bupoSteps = layer is null ? 0 : o.EffectiveBupoSteps;

        using var trainer = new GrpoTrainer(model, o.Grpo, reference, lora);
        if (resume != null)
        {
            resume.Restore(model, trainer.Optimizer, lora);
            observer.OnMessage($"resumed from {resume.Directory} (step {resume.Step})");
        }

        // ---- started: from here the folder is the run's. Clear what dead runs and discarded futures left, then record the settings.
        markStarted();
        Directory.CreateDirectory(samplerDir);
        var removed = CleanRunFolder(checkpointsDir, samplerDir, resume?.Step);
        if (removed > 0) observer.OnMessage($"removed {removed} leftover file(s) of earlier runs in {outputDir}");
        WriteConfig(outputDir, o, resume, changed);
        using var metrics = new MetricsWriter(outputDir, resume?.Step, o.TensorBoard, resume is null ? 0 : (int)trainer.Optimizer.Steps);
        if (analysis != null) metrics.WriteEvent(analysis.ToJsonLine());

        var results = new List<StepMetrics>();
        var settings = Sampling(o);
        string? lastCheckpoint = resume?.Directory;
        var startStep = (resume?.Step ?? 0) + 1;
        var lastDone = startStep - 1;
        var cancelled = false;

        var lastSaved = -1;
        string SaveCheckpoint(int step)
        {
            var sw = Stopwatch.StartNew();
            var dir = TrainingCheckpoint.Save(checkpointsDir, step, o, layer, model, trainer.Optimizer, samplerGguf, samplerIsSource, lora, samplerLora);
            lastSaved = step;
            TrainingCheckpoint.Prune(checkpointsDir, o.KeepCheckpoints);
            observer.OnMessage($"checkpoint {dir} ({sw.Elapsed.TotalSeconds:0.00} s)");
            return dir;
        }

        // Weight sync: export, quantize, reload (LoRA: write the adapter and hot-swap it); returns its seconds.
        double SyncSampler(int step)
        {
            var sw = Stopwatch.StartNew();
            string? previous;
            string path;
            if (lora != null)
            {
                path = Path.Combine(samplerDir, $"step-{step:D6}.lora.gguf");
                lora.WriteGguf(path);
                sampler.SetLora(path);
                (previous, samplerLora) = (samplerLora, path);
            }
            else
            {
                path = Path.Combine(samplerDir, $"step-{step:D6}.{o.RolloutQuant}.gguf");
                WeightSync.Run(model, o.Model!, path, o.RolloutQuant, sampler.ReloadModel, threads: o.Threads);
                (previous, samplerGguf, samplerIsSource) = (samplerGguf, path, false);
            }
            // The file this sync replaced goes, when it is one of this run's (never the source model).
            if (previous != null && !string.Equals(previous, path, StringComparison.Ordinal) && Path.GetDirectoryName(Path.GetFullPath(previous)) == samplerDir)
                TryDelete(previous);
            return sw.Elapsed.TotalSeconds;
        }

        for (var step = startStep; step <= o.Steps; step++)
        {
            if (ct.IsCancellationRequested) { cancelled = true; break; }
            var swStep = Stopwatch.StartNew();
            var ipa = GrpoTrainer.IsIpaStep(step, layer, bupoSteps);

            // Rollouts. Cancellation up to the update leaves the model as it was after the previous step.
            var batch = StepPrompts(prompts.Count, o.PromptsPerStep, step, o.Seed);
            IReadOnlyList<RolloutResult> responses;
            var swRoll = Stopwatch.StartNew();
            try
            {
                responses = sampler.Generate(batch.Select(i => promptTokens[i]).ToArray(), o.SamplesPerPrompt, settings,
                    SplitMix64.Derive((ulong)o.Seed, 0x726F6C6C, (ulong)step), ct);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                cancelled = true;
                break;
            }
            var rolloutSeconds = swRoll.Elapsed.TotalSeconds;
            var rolloutTps = sampler.LastTokensPerSecond;

            // Score.
            var swReward = Stopwatch.StartNew();
            var rewards = Score(reward, responses.Select(r => prompts[batch[r.PromptIndex]]).ToArray(), responses);
            var rewardSeconds = swReward.Elapsed.TotalSeconds;
            var advantages = GroupAdvantages.Compute(rewards, o.SamplesPerPrompt, o.AdvantageStd);
            if (ct.IsCancellationRequested) { cancelled = true; break; }

            // The sampler sleeps through the update (its KV cache, and with --offload-sampler its model, freed for the
            // trainer); the weight sync or the next rollout wakes it.
            if (o.SamplerSleep) sampler.Sleep(o.OffloadSampler);

            // Update (PPO mini-batches over the rollout batch; IPA on block k in BuPO's first steps).
            var seqs = TrainingSequences(responses, r => promptTokens[batch[r]], advantages);
            var lr = LrSchedule.At(o, step);
            var stats = trainer.Update(step, seqs, layer, ipa, lr);

            // Sync, then the step's metrics.
            double? syncSeconds = step % o.SyncEvery == 0 || step == o.Steps ? SyncSampler(step) : null;
            var m = StepMetricsOf(o, step, layer, lr, stats, responses, rewards, batch.Length, syncSeconds,
                rolloutSeconds, rolloutTps, rewardSeconds, swStep.Elapsed.TotalSeconds);
            metrics.Write(m);
            metrics.WriteOptimizerSteps(step, stats.PerOptimizerStep);
            results.Add(m);
            lastDone = step;
            observer.OnStep(m, o);

            // Checkpoint.
            if ((o.CheckpointEvery > 0 && step % o.CheckpointEvery == 0) || step == o.Steps)
                lastCheckpoint = SaveCheckpoint(step);
            if (ct.IsCancellationRequested && step < o.Steps) { cancelled = true; break; }
        }

        if (cancelled && lastDone >= 1 && lastDone >= startStep)
        {
            if (lastSaved != lastDone) lastCheckpoint = SaveCheckpoint(lastDone);
            observer.OnMessage($"cancelled after step {lastDone}; resume with --resume {lastCheckpoint}");
        }
        return new TrainingResult
        {
            OutputDir = outputDir,
            Steps = results,
            LastStep = lastDone,
            BupoLayer = layer,
            LayerAnalysis = analysis,
            SamplerGguf = samplerGguf,
            LoraAdapter = samplerLora,
            LastCheckpoint = lastCheckpoint,
            Cancelled = cancelled,
        };
    }

    /// <summary>
    /// The checkpoint <c>--resume</c> names and the settings that differ from it (a setting that would change the run's
    /// data, sampling or math is refused); without --resume, a folder that already holds a run's checkpoints is refused.
    /// </summary>
    private static (TrainingCheckpoint? Resume, IReadOnlyList<(string Name, string Before, string After)> Changed) ResumeOf(TrainOptions o, string checkpointsDir)
    {
        if (o.Resume == null)
        {
            if (TrainingCheckpoint.Latest(checkpointsDir) is { } existing)
                throw new BupoException($"--output {o.Output} already holds a run's checkpoints ({Path.GetFileName(existing)}): continue it with --resume latest, or choose another --output");
            return (null, []);
        }
        var resume = TrainingCheckpoint.Load(TrainingCheckpoint.ResolveFolder(o.Resume, checkpointsDir));
        if (resume.Step >= o.Steps) throw new BupoException($"--resume: the checkpoint is at step {resume.Step}, and --steps is {o.Steps}: nothing left to run");
        var changed = SettingChanges(resume.Options, o);
        if (changed.FirstOrDefault(c => !MayChangeOnResume.Contains(c.Name)) is { Name: not null } bad)
            throw new BupoException($"--resume: --{bad.Name} is {bad.After} here but {bad.Before} in {resume.Directory}; a resumed run keeps its settings (only {string.Join(", ", MayChangeOnResume.Order(StringComparer.Ordinal))} may change)");
        return (resume, changed);
    }

    /// <summary>The prompts' token ids as the sampler sees them, left-truncated to <paramref name="maxPromptTokens"/>.</summary>
    private static int[][] EncodePrompts(IReadOnlyList<PromptItem> prompts, Func<PromptItem, IRolloutSampler, string> format, IRolloutSampler sampler, int maxPromptTokens)
    {
        var promptTokens = new int[prompts.Count][];
        for (var i = 0; i < prompts.Count; i++)
        {
            var ids = PromptTemplates.Encode(format(prompts[i], sampler), sampler.Tokenizer);
            if (ids.Length == 0) throw new BupoException($"prompt '{prompts[i].Id}' gives no tokens");
            if (ids.Length > maxPromptTokens) ids = ids[^maxPromptTokens..];
            promptTokens[i] = ids;
        }
        return promptTokens;
    }

    /// <summary>
    /// BuPO's block k: the fixed one, the checkpoint's on a resume, or (--bupo-layer auto) the boundary layer of an
    /// analysis of sampled responses; null for GRPO.
    /// </summary>
    private static (int? Layer, LayerAnalysis? Analysis) ResolveLayer(TrainOptions o, TrainingCheckpoint? resume, int[][] promptTokens, IRolloutSampler sampler,
        TransformerModel model, ITrainingObserver observer, CancellationToken ct)
    {
        if (!o.IsAutoLayer) return (o.FixedBupoLayer, null);
        if (resume?.BupoLayer is { } saved) return (saved, null);
        var order = GrpoTrainer.Shuffle(promptTokens.Length, SplitMix64.Derive((ulong)o.Seed, 0x6175746F));
        var pick = order.Take(Math.Min(o.AutoLayerPrompts, promptTokens.Length)).ToArray();
        observer.OnMessage($"--bupo-layer auto: sampling {pick.Length} responses of up to {o.AutoLayerMaxTokens} tokens for the boundary-layer analysis");
        var resp = sampler.Generate(pick.Select(i => promptTokens[i]).ToArray(), 1,
            Sampling(o) with { MaxTokens = o.AutoLayerMaxTokens, Temperature = 1.0, TopP = 1.0, TopK = 0, MinP = 0 },
            SplitMix64.Derive((ulong)o.Seed, 0x616E616C), ct);
        var analysis = BoundaryLayerAnalysis.Run(model, resp.Select(r => (promptTokens[pick[r.PromptIndex]], r.ResponseTokens)).ToArray(), o.AutoLayerTau, o.Device, ct);
        observer.OnLayerChosen(analysis);
        return (analysis.Layer, analysis);
    }

    /// <summary>The reward of each response (<paramref name="items"/>[i] is response i's prompt).</summary>
    private static double[] Score(IRewardFunction reward, IReadOnlyList<PromptItem> items, IReadOnlyList<RolloutResult> responses)
    {
        var samples = responses.Select((r, i) => new RewardSample(items[i], r.Text)).ToArray();
        var rewards = reward.Score(samples);
        if (rewards.Length != samples.Length) throw new BupoException($"reward '{reward.Name}' returned {rewards.Length} rewards for {samples.Length} responses");
        return rewards;
    }

    /// <summary>One step's metrics row (<paramref name="syncSeconds"/>: null when the step did not sync).</summary>
    private static StepMetrics StepMetricsOf(TrainOptions o, int step, int? layer, double lr, UpdateStats stats, IReadOnlyList<RolloutResult> responses, double[] rewards,
        int groups, double? syncSeconds, double rolloutSeconds, double rolloutTps, double rewardSeconds, double stepSeconds)
    {
        var lengths = responses.Select(r => r.ResponseTokens.Length).ToArray();
        var groupsFlat = Enumerable.Range(0, groups).Count(g => rewards.Skip(g * o.SamplesPerPrompt).Take(o.SamplesPerPrompt).Distinct().Count() == 1);
        return new StepMetrics
        {
            Step = step,
            Phase = stats.Phase,
            BupoLayer = layer ?? -1,
            Lr = lr,
            RewardMean = rewards.Average(),
            RewardStd = Std(rewards),
            Accuracy = rewards.Count(r => r >= o.AccuracyThreshold) / (double)rewards.Length,
            ResponseLengthMean = lengths.Average(),
            ResponseLengthMax = lengths.Max(),
            TruncatedFraction = responses.Count(r => r.Finish == FinishReason.MaxTokens) / (double)responses.Count,
            ZeroAdvantageGroups = groupsFlat / (double)groups,
            EntropyFull = stats.EntropyFull,
            EntropyLayer = stats.EntropyLayer,
            Loss = stats.Loss,
            ClipFraction = stats.ClipFraction,
            DualClipFraction = stats.DualClipFraction,
            ApproxKl = stats.ApproxKl,
            RefKl = stats.RefKl,
            GradNorm = stats.GradNorm,
            OptimizerSteps = stats.OptimizerSteps,
            SkippedSteps = stats.SkippedSteps,
            MismatchKl = stats.Mismatch.MeanKl,
            MismatchK3 = stats.Mismatch.MeanK3Kl,
            MismatchOutsideFraction = stats.Mismatch.OutsideFraction,
            TisTruncatedFraction = stats.Mismatch.TruncatedFraction,
            RolloutTokens = lengths.Sum(x => (long)x),
            RolloutTokensPerSecond = rolloutTps,
            TrainTokens = stats.TrainTokens,
            TrainTokensPerSecond = stats.TrainTokens / Math.Max(stats.UpdateSeconds, 1e-9),
            Synced = syncSeconds.HasValue,
            SyncSeconds = syncSeconds ?? 0,
            RolloutSeconds = rolloutSeconds,
            RewardSeconds = rewardSeconds,
            OldLogProbSeconds = stats.OldLogProbSeconds,
            TrainSeconds = stats.OldLogProbSeconds + stats.UpdateSeconds,
            StepSeconds = stepSeconds,
        };
    }

    /// <summary>
    /// The dataset indices of 1-based step <paramref name="step"/>: the steps walk through seeded per-epoch permutations
    /// of the dataset, <paramref name="perStep"/> prompts at a time.
    /// </summary>
    public static int[] StepPrompts(int datasetSize, int perStep, int step, long seed)
    {
        var result = new int[perStep];
        long first = (long)(step - 1) * perStep;
        int[]? perm = null;
        long permEpoch = -1;
        for (var j = 0; j < perStep; j++)
        {
            var global = first + j;
            var epoch = global / datasetSize;
            if (epoch != permEpoch)
            {
                perm = GrpoTrainer.Shuffle(datasetSize, SplitMix64.Derive((ulong)seed, 0x64617461, (ulong)epoch));
                permEpoch = epoch;
            }
            result[j] = perm![(int)(global % datasetSize)];
        }
        return result;
    }

    /// <summary>
    /// Removes dead temporary files (killed checkpoint writes, exports), the sampler files of earlier starts (the sampler
    /// starts from the source model or the checkpoint's own copy) and, on resume, the checkpoints after the resumed step
    /// (a future this run replaces). Returns how many entries went.
    /// </summary>
    private static int CleanRunFolder(string checkpointsDir, string samplerDir, int? resumeStep)
    {
        var n = TrainingCheckpoint.RemoveLeftovers(checkpointsDir);
        if (resumeStep is { } r) n += TrainingCheckpoint.RemoveAfter(checkpointsDir, r);
        foreach (var f in Directory.GetFiles(samplerDir))
        {
            var name = Path.GetFileName(f);
            if (name.StartsWith('.') || name.Contains(".tmp-", StringComparison.Ordinal) || name.StartsWith("step-", StringComparison.Ordinal))
            {
                TryDelete(f);
                n++;
            }
        }
        return n;
    }

    /// <summary>config.json: the resolved settings, and under "resumes" every resume with the settings it changed.</summary>
    private static void WriteConfig(string outputDir, TrainOptions o, TrainingCheckpoint? resume, IReadOnlyList<(string Name, string Before, string After)> changed)
    {
        var path = Path.Combine(outputDir, "config.json");
        var root = JsonNode.Parse(TrainConfig.ToJson(o))!.AsObject();
        var resumes = new JsonArray();
        if (resume != null)
        {
            try
            {
                if (File.Exists(path) && JsonNode.Parse(File.ReadAllText(path))?[TrainConfig.ResumesKey] is JsonArray earlier)
                    foreach (var e in earlier) resumes.Add(e?.DeepClone());
            }
            catch (JsonException) { }
            var diff = new JsonObject();
            foreach (var (name, before, after) in changed)
                if (name != "resume") diff[name] = new JsonObject { ["from"] = JsonNode.Parse(before), ["to"] = JsonNode.Parse(after) };
            resumes.Add(new JsonObject
            {
                ["at"] = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture),
                ["checkpoint"] = resume.Directory,
                ["step"] = resume.Step,
                ["changed"] = diff,
            });
        }
        root[TrainConfig.ResumesKey] = resumes;
        AtomicFile.WriteAllText(path, root.ToJsonString(JsonFormat.IndentedUnescaped));
    }

    private static void TryDeleteEmptyFolder(string dir)
    {
        try { if (!Directory.EnumerateFileSystemEntries(dir).Any()) Directory.Delete(dir); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    private static double Std(double[] x)
    {
        if (x.Length < 2) return 0;
        var mean = x.Average();
        return Math.Sqrt(x.Sum(v => (v - mean) * (v - mean)) / (x.Length - 1));
    }

    private static void TryDelete(string path)
    {
        try { File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    private sealed class NullObserver : ITrainingObserver;

    /// <summary>
    /// The trainer's input from the sampler's responses: each response's tokens with its behaviour log-probs (the
    /// distribution it was actually drawn from: what the TIS weights divide by) and its advantage.
    /// </summary>
    internal static TrainingSequence[] TrainingSequences(IReadOnlyList<RolloutResult> responses, Func<int, int[]> promptTokens, IReadOnlyList<double> advantages) =>
        responses.Select((r, i) => new TrainingSequence(r.PromptIndex, promptTokens(r.PromptIndex), r.ResponseTokens, r.BehaviorLogProbs, advantages[i])).ToArray();

    /// <summary>The rollouts' sampling settings of a run (--temperature, --top-p, --top-k, --min-p, --max-response-tokens, --stop).</summary>
    internal static RolloutSampling Sampling(TrainOptions o) => new()
    {
        Temperature = o.Temperature, TopP = o.TopP, TopK = o.TopK, MinP = o.MinP, MaxTokens = o.MaxResponseTokens, StopStrings = o.Stop,
    };
}
