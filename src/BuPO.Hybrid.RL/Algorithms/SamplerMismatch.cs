using TorchSharp;
using static TorchSharp.torch;

namespace BuPO.Hybrid.RL.Algorithms;

/// <summary>Per-step report of how far the quantized sampler is from the trainer (BUPO_SPEC.md §6).</summary>
/// <param name="MeanKl">Mean over response tokens of log π_sampler - log π_old (k1 estimate of KL(sampler ‖ trainer), tokens drawn from the sampler).</param>
/// <param name="MeanK3Kl">The same KL by the low-variance k3 estimator.</param>
/// <param name="OutsideFraction">Share of tokens whose ratio π_old / π_sampler is outside [0.8, 1.25].</param>
/// <param name="TruncatedFraction">Share of tokens whose importance weight hit the cap C.</param>
public sealed record MismatchStats(double MeanKl, double MeanK3Kl, double OutsideFraction, double TruncatedFraction);

/// <summary>
/// Truncated importance sampling for rollouts drawn from a quantized GGUF: each token's loss is weighted by
/// w = min(exp(log π_θold,full - log π_sampler), C) (C = 2 by default). During BuPO's IPA steps the weight
/// still uses full-policy log-probs, since the sampler samples the full policy.
/// </summary>
public static class SamplerMismatch
{
    /// <summary>Default cap C.</summary>
    public const double DefaultCap = 2.0;

    /// <summary>The TIS weights [B, T] (zero on masked positions); no grad.</summary>
    public static Tensor Weights(Tensor oldFullLogProbs, Tensor samplerLogProbs, Tensor mask, double cap = DefaultCap)
    {
        using var _ = no_grad();
        using var lo = (-20.0).ToScalar();
        using var hi = 20.0.ToScalar();
        using var capS = cap.ToScalar();
        var w = (oldFullLogProbs - samplerLogProbs).clamp(lo, hi).exp().clamp_max(capS);
        return w * mask.to_type(w.dtype);
    }

    /// <summary>Mismatch statistics over the response tokens.</summary>
    public static MismatchStats Measure(Tensor oldFullLogProbs, Tensor samplerLogProbs, Tensor mask, double cap = DefaultCap)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var m = mask.to_type(ScalarType.Float64);
        var count = m.sum().clamp_min(BuPO.Hybrid.Model.ScalarConstants.One);
        var logRatio = (oldFullLogProbs - samplerLogProbs).to_type(ScalarType.Float64);
        var k1 = (-logRatio * m).sum() / count;
        var k3 = ((logRatio.exp() - logRatio).sub(BuPO.Hybrid.Model.ScalarConstants.One) * m).sum() / count;
        var ratio = logRatio.exp();
        using var low = 0.8.ToScalar();
        using var high = 1.25.ToScalar();
        using var capS = cap.ToScalar();
        var outside = ((ratio.lt(low).logical_or(ratio.gt(high))).to_type(ScalarType.Float64) * m).sum() / count;
        var truncated = (ratio.ge(capS).to_type(ScalarType.Float64) * m).sum() / count;
        return new MismatchStats(k1.item<double>(), k3.item<double>(), outside.item<double>(), truncated.item<double>());
    }
}
