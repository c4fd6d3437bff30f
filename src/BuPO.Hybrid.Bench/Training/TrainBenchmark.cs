using System.Diagnostics;
using BuPO.Hybrid.Model;
using BuPO.Hybrid.RL.Algorithms;
using BuPO.Hybrid.RL.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace BuPO.Hybrid.Bench.Training;

/// <summary>
/// Trainer throughput of one forward + backward + AdamW step on random tokens, for the full policy (a GRPO step) and for a
/// BuPO layer-k step done two ways: the reference's (the whole model runs, every hidden state and the final [tokens x
/// vocab] logits are kept, then block k's [tokens x vocab] lens logits are materialized) and ours (only blocks 0..k run;
/// log-probs through the chunked <see cref="InternalPolicyHead"/>). Each step ends as the trainer's: global grad-norm clip
/// to 1.0 and the trainer's own AdamW. <see cref="RunGroupShape"/> times the trainer's real update in the RL shape.
/// </summary>
public static class TrainBenchmark
{
    /// <summary>The modes' names in logs and JSON, indexed by <see cref="TrainStepMode"/>.</summary>
    public static readonly IReadOnlyList<string> ModeNames = ["full", "reference", "bupo"];

    /// <summary>PLATFORM_NOTES' H100 anchors (PyTorch 2.11, Qwen3-0.6B shape, bf16 autocast, 8 x 1024 tokens): tokens/s per mode.</summary>
    public static readonly IReadOnlyList<double> AnchorTokensPerSecond = [34_757, 62_562, 97_360];

    /// <summary>The anchors' speed ratio of <paramref name="mode"/> to the full step.</summary>
    public static double AnchorSpeedupVsFull(TrainStepMode mode) => AnchorTokensPerSecond[(int)mode] / AnchorTokensPerSecond[0];

    /// <summary>What a mode runs, in words.</summary>
    public static string Describe(TrainStepMode mode, int k) => mode switch
    {
        TrainStepMode.Full => "full policy (GRPO)",
        TrainStepMode.Reference => $"layer-{k} policy, reference style (full forward, all hidden states)",
        _ => $"layer-{k} policy, only blocks 0..{k} run",
    };

    /// <summary>
    /// Runs the warm-up then the timed steps of every mode: one step of each mode in turn (every mode's optimizer state
    /// alive at once), or with <see cref="TrainBenchmarkSettings.Sequential"/> one mode after the other (one optimizer
    /// state at a time: less memory, but load changes on a shared machine are no longer spread over the modes).
    /// </summary>
    public static TrainBenchmarkResult Run(TransformerModel model, TrainBenchmarkSettings settings, Action<string>? log = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(settings);
        log ??= _ => { };
        int batch = settings.Batch, seq = settings.Seq, warmup = settings.Warmup, steps = settings.Steps;
        var vocab = model.Config.VocabSize;
        var gen = new Random(settings.Seed);
        using var tokens = torch.tensor(Enumerable.Range(0, batch * seq).Select(_ => (long)gen.Next(vocab)).ToArray(), [batch, seq], ScalarType.Int64, model.Device);
        using var targets = torch.tensor(Enumerable.Range(0, batch * seq).Select(_ => (long)gen.Next(vocab)).ToArray(), [batch, seq], ScalarType.Int64, model.Device);
        using var advantages = torch.tensor(Enumerable.Range(0, batch).Select(i => i % 2 == 0 ? 1f : -1f).ToArray(), [batch], ScalarType.Float32, model.Device);
        using var mask = torch.ones([batch, seq], ScalarType.Float32, model.Device);
        TrainStepRunner Make(TrainStepMode m) => new(model, m, settings.Layer, settings.ChunkSize, settings.LearningRate, settings.Checkpointing,
            settings.TorchOptimizer, tokens, targets, advantages, mask);
        void Time(TrainStepRunner r, int i, List<double> times)
        {
            var ms = r.Step();
            if (i >= warmup) times.Add(ms);
            log(FormattableString.Invariant($"{(i < warmup ? "warm-up" : "step")} {(i < warmup ? i + 1 : i - warmup + 1)}/{(i < warmup ? warmup : steps)} {ModeNames[(int)r.Mode]}: {ms:F1} ms (RSS {BenchMachine.RssGiB() ?? double.NaN:F2} GiB)"));
        }

        var tokensPerStep = (long)batch * seq;
        if (settings.Sequential)
        {
            var results = new List<TrainModeResult>();
            foreach (var m in settings.Modes)
            {
                var times = new List<double>();
                using (var r = Make(m))
                {
                    for (var i = 0; i < warmup + steps; i++) Time(r, i, times);
                    results.Add(new TrainModeResult(m, times.ToArray(), r.TrainedParameters, r.LastLoss));
                }
                model.zero_grad(set_to_none: true);
                GC.Collect();
                GC.WaitForPendingFinalizers();
            }
            return new TrainBenchmarkResult(results, tokensPerStep);
        }
        var runners = settings.Modes.Select(Make).ToArray();
        try
        {
            var times = runners.Select(_ => new List<double>()).ToArray();
            for (var i = 0; i < warmup + steps; i++)
                for (var j = 0; j < runners.Length; j++) Time(runners[j], i, times[j]);
            return new TrainBenchmarkResult(runners.Select((r, j) => new TrainModeResult(r.Mode, times[j].ToArray(), r.TrainedParameters, r.LastLoss)).ToArray(), tokensPerStep);
        }
        finally
        {
            foreach (var r in runners) r.Dispose();
            model.zero_grad(set_to_none: true);
        }
    }

    /// <summary>
    /// The RL-shape benchmark: prompts of P tokens with G responses of R tokens each, one update of the real trainer
    /// (<see cref="GrpoTrainer.Update"/>: the no-grad old-log-prob pass, then forward + backward + AdamW in one mini-batch)
    /// per timed step, with the shared-prefix forward and with one sequence per response, interleaved so that load changes
    /// hit both alike.
    /// </summary>
    public static GroupShapeResult RunGroupShape(TransformerModel model, GroupShapeSettings settings, Action<string>? log = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(settings);
        log ??= _ => { };
        int prompts = settings.Prompts, g = settings.Group, p = settings.PromptTokens, r = settings.ResponseTokens, k = settings.Layer;
        int warm = settings.Warmup, timed = settings.Steps;
        var dev = model.Device;
        var rng = new Random(settings.Seed);
        var vocab = model.Config.VocabSize;
        var seqs = new List<TrainingSequence>();
        for (var i = 0; i < prompts; i++)
        {
            var prompt = Enumerable.Range(0, p).Select(_ => rng.Next(vocab)).ToArray();
            for (var j = 0; j < g; j++)
            {
                var resp = Enumerable.Range(0, r).Select(_ => rng.Next(vocab)).ToArray();
                seqs.Add(new TrainingSequence(i, prompt, resp, Enumerable.Repeat((float)-Math.Log(vocab), r).ToArray(), j % 2 == 0 ? 1.0 : -1.0));
            }
        }
        var variants = settings.Modes.SelectMany(m => new[] { (Mode: m, Shared: false), (Mode: m, Shared: true) }).ToArray();
        var options = new GrpoSettings
        {
            // Dr. GRPO's constant normaliser is the response budget, as TrainOptions sets it from --max-response-tokens.
            Clip = new PpoClipOptions { TokenSumNormalizer = r },
            MiniBatchPrompts = prompts, MicroBatchTokens = int.MaxValue, GradientCheckpointing = settings.Checkpointing, Seed = settings.Seed, Tis = true,
        };
        var trainers = variants.Select(v => new GrpoTrainer(model, options with { SharedPrefix = v.Shared })).ToArray();
        var times = variants.Select(_ => new List<double>()).ToArray();
        var stats = new UpdateStats?[variants.Length];
        try
        {
            for (var step = 0; step < warm + timed; step++)
                for (var v = 0; v < variants.Length; v++)
                {
                    var ipa = variants[v].Mode == TrainStepMode.Bupo;
                    BenchMachine.Synchronize(dev);
                    var sw = Stopwatch.StartNew();
                    stats[v] = trainers[v].Update(step + 1, seqs, ipa ? k : null, ipa, settings.LearningRate);
                    BenchMachine.Synchronize(dev);
                    var ms = sw.Elapsed.TotalMilliseconds;
                    if (step >= warm) times[v].Add(ms);
                    log(FormattableString.Invariant($"{(step < warm ? "warm-up" : "step")} {ModeNames[(int)variants[v].Mode]} {(variants[v].Shared ? "shared-prefix" : "per-sequence")}: {ms:F1} ms"));
                    GC.Collect();
                    GC.WaitForPendingFinalizers();
                }
        }
        finally
        {
            foreach (var t in trainers) t.Dispose();
        }
        var responseTokens = (long)prompts * g * r;
        return new GroupShapeResult(variants.Select((v, i) => new GroupShapeRow(v.Mode, v.Shared, times[i].ToArray(), stats[i]!.TrainTokens, responseTokens)).ToArray());
    }
}
