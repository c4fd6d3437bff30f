using System.Diagnostics;
using BuPO.Hybrid.Model;
using BuPO.Hybrid.RL.Training;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;
using BuPO.Hybrid.RL.Algorithms;

namespace BuPO.Hybrid.Demo;

/// <summary>Settings of <see cref="SftTrainer"/>.</summary>
public sealed record SftOptions
{
    /// <summary>Optimizer steps.</summary>
    public int Steps { get; init; } = 600;
    /// <summary>Problems per step (fresh ones every step, from the train split).</summary>
    public int BatchSize { get; init; } = 32;
    /// <summary>Peak learning rate (AdamW), reached after <see cref="WarmupSteps"/> and decayed by a cosine to 10%.</summary>
    public double LearningRate { get; init; } = 2e-3;
    public int WarmupSteps { get; init; } = 30;
    public double WeightDecay { get; init; } = 0.01;
    public double GradClip { get; init; } = 1.0;
    /// <summary>Seed of the problem stream.</summary>
    public ulong Seed { get; init; } = 1;
    /// <summary>
    /// Weight of the prompt tokens' next-token loss relative to the solution's (0 = solution only). A little language
    /// modelling of the problem text teaches the copy heads (names and items repeat in the question) that the solution needs.
    /// </summary>
    public double PromptLossWeight { get; init; } = 0.0;
    /// <summary>The problems trained on.</summary>
    public ArithmeticTaskOptions Tasks { get; init; } = new();

    /// <summary>The flaw of a <see cref="FlawShare"/> of the demonstrations (a flawed demonstrator, as distilled data has flaws).</summary>
    public DemonstrationFlaw Flaw { get; init; } = DemonstrationFlaw.None;

    /// <summary>
    /// Share of the demonstrations, in [0, 1), that carry <see cref="Flaw"/>. The SFT model copies the flaw at about this
    /// rate; a verifiable reward can remove it, because it is one behaviour shared by all problems, where the arithmetic
    /// facts a tiny model gets wrong are each a separate thing to learn.
    /// </summary>
    public double FlawShare { get; init; }
}

/// <summary>One SFT step's numbers.</summary>
/// <param name="Step">1-based step.</param>
/// <param name="Loss">Mean token cross-entropy over the solution tokens (and the final EOS).</param>
/// <param name="TokenAccuracy">Share of those tokens the model's argmax predicts.</param>
/// <param name="LearningRate">The learning rate used.</param>
/// <param name="Seconds">Time since training started.</param>
public sealed record SftStep(int Step, double Loss, double TokenAccuracy, double LearningRate, double Seconds);

/// <summary>
/// Supervised fine-tuning of the demo model on generated solutions: token cross-entropy on the solution part of
/// <c>BOS + "Q: problem\nA: " + solution + EOS</c> (the prompt is context only), AdamW, warm-up then cosine decay,
/// gradient-norm clipping. The model learns to end its answer with EOS after <c>\boxed{N}</c>.
/// </summary>
public static class SftTrainer
{
    /// <summary>
    /// Changes when the same options would train a different model (2: the trainer's AdamW replaced TorchSharp's), so a
    /// cached SFT model of an older recipe is not reused.
    /// </summary>
    public const int RecipeVersion = 2;

    /// <summary>Trains <paramref name="model"/> in place; returns the per-step metrics.</summary>
    public static IReadOnlyList<SftStep> Train(TransformerModel model, SftOptions options, Action<SftStep>? onStep = null, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        if (options.Steps < 0 || options.BatchSize < 1) throw new BupoException($"SFT: steps ({options.Steps}) must be >= 0 and batch size ({options.BatchSize}) >= 1");
        if (!(options.FlawShare >= 0 && options.FlawShare < 1)) throw new BupoException($"SFT: the flaw share must be in [0, 1), got {options.FlawShare}");
        var generator = new ArithmeticTaskGenerator(options.Seed, options.Tasks);
        var parameters = model.TrainableParameters().ToList();
        // The trainer's AdamW, not TorchSharp's optim.AdamW, whose step makes temporary Scalars for every parameter
        // (BUPO002: one finalized during a native call aborts the run).
        using var optimizer = new AdamW(parameters.Select((p, i) => KeyValuePair.Create(i.ToString(System.Globalization.CultureInfo.InvariantCulture), p)).ToList(),
            beta1: 0.9, beta2: 0.98, eps: 1e-8, weightDecay: options.WeightDecay);
        var history = new List<SftStep>(options.Steps);
        var clock = Stopwatch.StartNew();
        model.train();
        for (var step = 1; step <= options.Steps; step++)
        {
            cancellation.ThrowIfCancellationRequested();
            var lr = LearningRateAt(step, options);
            var tasks = Demonstrations(generator.Generate(options.BatchSize), step, options);
            double loss, acc;
            using (NewDisposeScope())
            {
                var (tokens, targets, weights) = BuildBatch(tasks, model.Device, options.PromptLossWeight);
                optimizer.ZeroGrad();
                using var result = model.Forward(tokens, null, null);
                var logits = result.Logits!;
                var v = logits.shape[^1];
                var flatLogits = logits.reshape(-1, v);
                var flatTargets = targets.reshape(-1);
                var flatWeights = weights.reshape(-1);
                var perToken = F.cross_entropy(flatLogits, flatTargets.clamp_min(ScalarConstants.Zero), reduction: nn.Reduction.None);
                var lossT = (perToken * flatWeights).sum() / flatWeights.sum();
                lossT.backward();
                optimizer.ClipGrads(optimizer.GradNorm(), options.GradClip);
                optimizer.Step(lr);
                using (no_grad())
                {
                    var valid = flatWeights.eq(ScalarConstants.One);
                    var correct = flatLogits.argmax(1).eq(flatTargets).logical_and(valid);
                    acc = correct.sum().to_type(ScalarType.Float64).item<double>() / Math.Max(1, valid.sum().to_type(ScalarType.Float64).item<double>());
                }
                loss = lossT.to_type(ScalarType.Float64).item<double>();
            }
            var s = new SftStep(step, loss, acc, lr, clock.Elapsed.TotalSeconds);
            history.Add(s);
            onStep?.Invoke(s);
        }
        model.eval();
        return history;
    }

    /// <summary>
    /// The step's demonstrations: each task with its own solution, or with <see cref="SftOptions.Flaw"/> for a seeded
    /// <see cref="SftOptions.FlawShare"/> of them (drawn from the seed, the step and the row, so the problem stream itself
    /// is the same with and without the flaw).
    /// </summary>
    public static IReadOnlyList<ArithmeticTask> Demonstrations(IReadOnlyList<ArithmeticTask> tasks, int step, SftOptions options)
    {
        if (options.FlawShare <= 0 || options.Flaw == DemonstrationFlaw.None) return tasks;
        return tasks.Select((t, i) =>
        {
            var u = (SplitMix64.Derive(options.Seed, 0x64726F70, (ulong)step, (ulong)i) >> 11) * (1.0 / (1UL << 53));
            return u < options.FlawShare ? t.With(options.Flaw) : t;
        }).ToList();
    }

    /// <summary>Linear warm-up to the peak, then a cosine down to 10% of it at the last step.</summary>
    public static double LearningRateAt(int step, SftOptions o)
    {
        if (o.WarmupSteps > 0 && step <= o.WarmupSteps) return o.LearningRate * step / o.WarmupSteps;
        var span = Math.Max(1, o.Steps - o.WarmupSteps);
        var t = Math.Clamp((step - o.WarmupSteps) / (double)span, 0, 1);
        return o.LearningRate * (0.1 + 0.9 * 0.5 * (1 + Math.Cos(Math.PI * t)));
    }

    /// <summary>
    /// Right-padded token rows <c>BOS prompt solution EOS</c> (padding with EOS; padding never enters attention of real
    /// tokens under the causal mask and its targets are ignored) and next-token targets that are -100 outside the solution.
    /// </summary>
    public static (Tensor Tokens, Tensor Targets, Tensor Weights) BuildBatch(IReadOnlyList<ArithmeticTask> tasks, Device device, double promptWeight = 0)
    {
        var rows = tasks.Select(t =>
        {
            var prompt = CharVocabulary.Encode(t.Prompt);
            var solution = CharVocabulary.Encode(t.Solution, addBos: false);
            return (Ids: prompt.Concat(solution).Append(CharVocabulary.EosId).ToArray(), PromptLength: prompt.Length);
        }).ToList();
        var width = rows.Max(r => r.Ids.Length);
        var b = rows.Count;
        var tok = new long[b * width];
        var tgt = new long[b * width];
        var wts = new float[b * width];
        Array.Fill(tgt, -100L);
        for (var i = 0; i < b; i++)
        {
            var (ids, p) = rows[i];
            for (var j = 0; j < width; j++) tok[i * width + j] = j < ids.Length ? ids[j] : CharVocabulary.EosId;
            // position j predicts ids[j+1]; train on predictions of the solution and EOS: j + 1 >= p
            for (var j = 0; j < ids.Length - 1; j++)
            {
                var solution = j + 1 >= p;
                if (!solution && promptWeight <= 0) continue;
                tgt[i * width + j] = ids[j + 1];
                wts[i * width + j] = solution ? 1f : (float)promptWeight;
            }
        }
        return (torch.tensor(tok, [b, width], ScalarType.Int64, device), torch.tensor(tgt, [b, width], ScalarType.Int64, device),
            torch.tensor(wts, [b, width], ScalarType.Float32, device));
    }
}
