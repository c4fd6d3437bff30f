using BuPO.Hybrid.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace BuPO.Hybrid.RL.Algorithms;

/// <summary>How per-token losses are reduced to one number.</summary>
public enum LossAggregation
{
    /// <summary>Mean over all response tokens of the micro-batch (BuPO's reference setting).</summary>
    TokenMean,
    /// <summary>Mean over sequences of each sequence's token mean.</summary>
    SeqMeanTokenMean,
    /// <summary>
    /// Dr. GRPO (Liu et al., arXiv 2503.20783): mean over sequences of each sequence's token sum divided by a constant
    /// (<see cref="PpoClipOptions.TokenSumNormalizer"/>, the generation budget), so neither a response's length nor the
    /// batch's token count rescales its tokens' gradients.
    /// </summary>
    SeqMeanTokenSumNorm,
}

/// <summary>PPO-clip settings; defaults are BuPO's scripts (0.2 / 0.2 / dual clip 10).</summary>
public sealed record PpoClipOptions
{
    /// <summary>BuPO's settings (the defaults of train's clip options too).</summary>
    public static PpoClipOptions Default { get; } = new();

    /// <summary>The clip range's lower side: the ratio is clipped to [1 - ClipLow, 1 + ClipHigh] (the lower bound binds where the advantage is negative).</summary>
    public double ClipLow { get; init; } = 0.2;
    /// <summary>The clip range's upper side (binds where the advantage is positive; DAPO's clip-higher sets it above ClipLow).</summary>
    public double ClipHigh { get; init; } = 0.2;
    /// <summary>Dual-clip constant c applied where the advantage is negative; 0 turns it off.</summary>
    public double DualClip { get; init; } = 10.0;
    public LossAggregation Aggregation { get; init; } = LossAggregation.TokenMean;
    /// <summary>The constant divisor of <see cref="LossAggregation.SeqMeanTokenSumNorm"/> (the trainer uses max-response-tokens).</summary>
    public double TokenSumNormalizer { get; init; } = 1.0;
    /// <summary>The log-ratio is clamped to ±this before exp (the reference uses 20).</summary>
    public double LogRatioClamp { get; init; } = 20.0;
}

/// <summary>The loss and its diagnostics for one micro-batch.</summary>
/// <param name="Loss">Scalar loss to backpropagate (aggregated as configured).</param>
/// <param name="ClipFraction">Share of response tokens whose clipped term was the active one.</param>
/// <param name="ApproxKl">Mean of log π_old - log π_new over response tokens (verl's ppo_kl).</param>
/// <param name="DualClipFraction">Share of response tokens where the dual clip was active.</param>
public sealed record PolicyLossOutput(Tensor Loss, double ClipFraction, double ApproxKl, double DualClipFraction);

/// <summary>
/// GRPO's clipped policy-gradient loss (BUPO_SPEC.md §4): r = exp(clamp(log π - log π_old, ±20)),
/// L = max(-Â r, -Â clip(r, 1-ε_low, 1+ε_high)), where Â &lt; 0 also L = min(L, -c Â); each token's loss is
/// multiplied by an optional importance weight (the quantized-sampler correction, §6) and aggregated.
/// BuPO uses the same function with internal-layer log-probs for both π and π_old.
/// </summary>
public static class PolicyLoss
{
    /// <param name="logProbs">log π_θ of the response tokens [B, T] (with grad).</param>
    /// <param name="oldLogProbs">log π_θold [B, T] (no grad).</param>
    /// <param name="advantages">Â per sequence [B] or per token [B, T].</param>
    /// <param name="mask">1 for response tokens, 0 for padding/prompt [B, T].</param>
    /// <param name="options">Clip settings.</param>
    /// <param name="tokenWeights">Optional per-token weights [B, T] (truncated importance sampling), no grad.</param>
    public static PolicyLossOutput Compute(Tensor logProbs, Tensor oldLogProbs, Tensor advantages, Tensor mask,
        PpoClipOptions options, Tensor? tokenWeights = null)
    {
        using var scope = NewDisposeScope();
        var m = mask.to_type(logProbs.dtype);
        var adv = advantages.dim() == 1 ? advantages.unsqueeze(1).expand_as(logProbs) : advantages;
        adv = adv.to_type(logProbs.dtype);
        // Scalars held for the whole call (TorchSharp leaves implicitly converted ones to the GC's finalizer thread).
        using var lrLow = (-options.LogRatioClamp).ToScalar();
        using var lrHigh = options.LogRatioClamp.ToScalar();
        using var rLow = (1 - options.ClipLow).ToScalar();
        using var rHigh = (1 + options.ClipHigh).ToScalar();
        using var dual = options.DualClip.ToScalar();
        var logRatio = (logProbs - oldLogProbs).clamp(lrLow, lrHigh);
        var ratio = logRatio.exp();
        var loss1 = -adv * ratio;
        var loss2 = -adv * ratio.clamp(rLow, rHigh);
        var clipped = maximum(loss1, loss2);
        Tensor perToken = clipped;
        Tensor dualActive = zeros_like(clipped, dtype: ScalarType.Bool);
        if (options.DualClip > 0)
        {
            var loss3 = -adv.mul(dual);
            var neg = adv.lt(ScalarConstants.Zero);
            perToken = where(neg, minimum(clipped, loss3), clipped);
            dualActive = neg.logical_and(loss3 < clipped);
        }
        if (tokenWeights is not null) perToken = perToken * tokenWeights.detach().to_type(perToken.dtype);
        var loss = Aggregate(perToken, m, options.Aggregation, options.TokenSumNormalizer);

        var count = m.sum().clamp_min(ScalarConstants.One);
        double clipFrac, approxKl, dualFrac;
        using (no_grad())
        {
            clipFrac = ((loss2 > loss1).to_type(m.dtype) * m).sum().div(count).to_type(ScalarType.Float64).item<double>();
            approxKl = ((oldLogProbs - logProbs) * m).sum().div(count).to_type(ScalarType.Float64).item<double>();
            dualFrac = (dualActive.to_type(m.dtype) * m).sum().div(count).to_type(ScalarType.Float64).item<double>();
        }
        return new PolicyLossOutput(loss.MoveToOuterDisposeScope(), clipFrac, approxKl, dualFrac);
    }

    /// <summary>
    /// Reduces per-token values [B, T] under a mask. Sequence means count only sequences with at least one token;
    /// <paramref name="tokenSumNormalizer"/> is the constant divisor of <see cref="LossAggregation.SeqMeanTokenSumNorm"/>.
    /// </summary>
    public static Tensor Aggregate(Tensor perToken, Tensor mask, LossAggregation aggregation, double tokenSumNormalizer = 1.0)
    {
        var m = mask.to_type(perToken.dtype);
        return aggregation switch
        {
            LossAggregation.TokenMean => (perToken * m).sum() / m.sum().clamp_min(ScalarConstants.One),
            LossAggregation.SeqMeanTokenMean => ((perToken * m).sum(1) / m.sum(1).clamp_min(ScalarConstants.One)).masked_select(m.sum(1).gt(ScalarConstants.Zero)).mean(),
            LossAggregation.SeqMeanTokenSumNorm => SumNorm(perToken, m, tokenSumNormalizer),
            _ => throw new ArgumentOutOfRangeException(nameof(aggregation)),
        };
    }

    private static Tensor SumNorm(Tensor perToken, Tensor m, double normalizer)
    {
        using var c = normalizer.ToScalar();
        return (perToken * m).sum(1).div(c).masked_select(m.sum(1).gt(ScalarConstants.Zero)).mean();
    }

    /// <summary>
    /// The k3 estimator of KL(π_θ ‖ π_ref) per token: exp(ref - logp) - (ref - logp) - 1, clamped to [-10, 10]
    /// as verl does ("low_var_kl").
    /// </summary>
    public static Tensor K3Kl(Tensor logProbs, Tensor refLogProbs)
    {
        var d = refLogProbs - logProbs;
        using var low = (-10).ToScalar();
        using var high = 10.ToScalar();
        return (d.exp() - d).sub(ScalarConstants.One).clamp(low, high);
    }
}
