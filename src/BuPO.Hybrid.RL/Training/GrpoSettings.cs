using BuPO.Hybrid.RL.Algorithms;

namespace BuPO.Hybrid.RL.Training;

/// <summary>
/// The algorithm and optimizer settings of <see cref="GrpoTrainer"/>, typed (what <see cref="TrainOptions"/>' text
/// means; <see cref="TrainOptions.Grpo"/> makes one). Defaults are TrainOptions' defaults, read from it (one source).
/// </summary>
public sealed record GrpoSettings
{
    private static readonly TrainOptions Defaults = new();

    /// <summary>PPO clip range, dual clip and loss aggregation.</summary>
    public PpoClipOptions Clip { get; init; } = Defaults.ClipOptions;

    /// <summary>Sampling temperature of the rollouts: log-probs are those of softmax(logits / T).</summary>
    public double Temperature { get; init; } = Defaults.Temperature;

    /// <summary>Weight of the k3 KL term to the reference model (0: none, no reference needed).</summary>
    public double KlCoef { get; init; } = Defaults.KlCoef;

    /// <summary>Weight of the entropy bonus.</summary>
    public double EntropyCoef { get; init; } = Defaults.EntropyCoef;

    /// <summary>Truncated importance sampling against the sampler's own log-probs.</summary>
    public bool Tis { get; init; } = Defaults.Tis;

    /// <summary>Cap of the truncated importance weight.</summary>
    public double TisCap { get; init; } = Defaults.TisCap;

    /// <summary>AdamW β1.</summary>
    public double Beta1 { get; init; } = Defaults.Beta1;

    /// <summary>AdamW β2.</summary>
    public double Beta2 { get; init; } = Defaults.Beta2;

    /// <summary>AdamW ε.</summary>
    public double AdamEps { get; init; } = Defaults.AdamEps;

    /// <summary>AdamW decoupled weight decay.</summary>
    public double WeightDecay { get; init; } = Defaults.WeightDecay;

    /// <summary>Gradient-norm clip of each optimizer step.</summary>
    public double GradClip { get; init; } = Defaults.GradClip;

    /// <summary>Prompts (groups) per PPO mini-batch: one optimizer step each.</summary>
    public int MiniBatchPrompts { get; init; } = Defaults.MiniBatchPrompts;

    /// <summary>Passes over each rollout batch.</summary>
    public int PpoEpochs { get; init; } = Defaults.PpoEpochs;

    /// <summary>Token budget of one micro-batch (gradients accumulate over a mini-batch's micro-batches).</summary>
    public int MicroBatchTokens { get; init; } = Defaults.MicroBatchTokens;

    /// <summary>One forward of a prompt shared by its group's responses (else one sequence per response).</summary>
    public bool SharedPrefix { get; init; } = Defaults.SharedPrefix;

    /// <summary>Recompute each block in the backward pass instead of keeping its activations.</summary>
    public bool GradientCheckpointing { get; init; } = Defaults.GradientCheckpointing;

    /// <summary>Seed of the mini-batch order.</summary>
    public long Seed { get; init; } = Defaults.Seed;
}
