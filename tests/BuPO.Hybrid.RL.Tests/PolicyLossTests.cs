using TorchSharp;
using static TorchSharp.torch;
using BuPO.Hybrid.RL.Algorithms;

namespace BuPO.Hybrid.RL.Tests;

public class PolicyLossTests
{
    private static Tensor T(params double[] v) => tensor(v, ScalarType.Float64);

    [Fact]
    public void ClippedLossMatchesHandComputedValues()
    {
        // Four tokens of one sequence: ratios e^0.5 (>1.2), e^-0.5 (<0.8), 1.1, and e^3 with A < 0 (dual clip).
        var oldLp = T(-1, -1, -1, -1).reshape(1, 4);
        var newLp = T(-0.5, -1.5, -1 + Math.Log(1.1), 2).reshape(1, 4).requires_grad_(true);
        var adv = T(1, -1, 2, -0.5).reshape(1, 4);
        var mask = ones(1, 4, ScalarType.Float64);
        var o = new PpoClipOptions();
        var r = new[] { Math.Exp(0.5), Math.Exp(-0.5), 1.1, Math.Exp(3) };
        double[] a = { 1, -1, 2, -0.5 };
        var expected = new double[4];
        for (var i = 0; i < 4; i++)
        {
            var l = Math.Max(-a[i] * r[i], -a[i] * Math.Clamp(r[i], 0.8, 1.2));
            if (a[i] < 0) l = Math.Min(l, -10 * a[i]);
            expected[i] = l;
        }
        // token 0: max(-1.6487, -1.2) = -1.2 (clipped); token 1: max(0.6065, 0.8) = 0.8 (clipped);
        // token 2: -2.2 (inside); token 3: max(10.04, 0.6) = 10.04 -> dual clip min(10.04, 5) = 5.
        Assert.Equal(-1.2, expected[0], 12); Assert.Equal(0.8, expected[1], 12); Assert.Equal(5, expected[3], 12);
        var outp = PolicyLoss.Compute(newLp, oldLp, adv, mask, o);
        Assert.Equal(expected.Average(), outp.Loss.item<double>(), 10);
        Assert.Equal(0.5, outp.ClipFraction, 6);      // tokens 0 and 1
        Assert.Equal(0.25, outp.DualClipFraction, 6); // token 3
        Assert.Equal(new[] { -0.5, 0.5, -Math.Log(1.1), -3 }.Average(), outp.ApproxKl, 5);

        // Gradient: only the unclipped token 2 passes one: d(-A r)/d logp = -A r = -2.2, over 4 tokens.
        outp.Loss.backward();
        var g = newLp.grad!.data<double>().ToArray();
        Assert.Equal(0, g[0], 12); Assert.Equal(0, g[1], 12); Assert.Equal(-2.2 / 4, g[2], 10); Assert.Equal(0, g[3], 12);
    }

    [Fact]
    public void DualClipOffKeepsTheLargeLoss()
    {
        var o = new PpoClipOptions { DualClip = 0 };
        var outp = PolicyLoss.Compute(T(2).reshape(1, 1), T(-1).reshape(1, 1), T(-0.5), ones(1, 1, ScalarType.Float64), o);
        Assert.Equal(0.5 * Math.Exp(3), outp.Loss.item<double>(), 8);
    }

    [Fact]
    public void AsymmetricClipAndMaskAndTokenWeights()
    {
        var o = new PpoClipOptions { ClipLow = 0.2, ClipHigh = 0.28 };
        // ratio 1.5, A = 1 -> clipped at 1.28 -> loss -1.28; second token masked out.
        var lp = T(Math.Log(1.5), 5).reshape(1, 2);
        var outp = PolicyLoss.Compute(lp, zeros(1, 2, ScalarType.Float64), T(1), T(1, 0).reshape(1, 2), o, tokenWeights: T(0.5, 100).reshape(1, 2));
        Assert.Equal(-1.28 * 0.5, outp.Loss.item<double>(), 10);
    }

    [Fact]
    public void SeqMeanTokenMeanWeighsSequencesEqually()
    {
        var per = T(1, 1, 1, 4, 0, 0).reshape(2, 3);
        var mask = T(1, 1, 1, 1, 0, 0).reshape(2, 3);
        Assert.Equal(7.0 / 4, PolicyLoss.Aggregate(per, mask, LossAggregation.TokenMean).item<double>(), 12);
        Assert.Equal((1 + 4) / 2.0, PolicyLoss.Aggregate(per, mask, LossAggregation.SeqMeanTokenMean).item<double>(), 12);
    }

    [Fact]
    public void EachAggregationModeMatchesItsHandComputedValue()
    {
        // Three sequences: token losses (2, 4, 6), (10), and one with no response tokens (all masked).
        var per = T(2, 4, 6, 10, 0, 0, 7, 7, 7).reshape(3, 3);
        var mask = T(1, 1, 1, 1, 0, 0, 0, 0, 0).reshape(3, 3);
        // token-mean: (2 + 4 + 6 + 10) / 4 tokens.
        Assert.Equal(22.0 / 4, PolicyLoss.Aggregate(per, mask, LossAggregation.TokenMean).item<double>(), 12);
        // seq-mean-token-mean: mean over the two non-empty sequences of (4, 10).
        Assert.Equal((4.0 + 10.0) / 2, PolicyLoss.Aggregate(per, mask, LossAggregation.SeqMeanTokenMean).item<double>(), 12);
        // seq-mean-token-sum-norm (Dr. GRPO): mean over the two sequences of (12 / 8, 10 / 8) with the constant 8.
        Assert.Equal((12.0 / 8 + 10.0 / 8) / 2, PolicyLoss.Aggregate(per, mask, LossAggregation.SeqMeanTokenSumNorm, 8).item<double>(), 12);
    }

    [Fact]
    public void DrGrpoGradientDoesNotDependOnResponseLength()
    {
        // With a constant normaliser every token gets the same gradient whatever its sequence's length; with
        // seq-mean-token-mean a token of the 1-token sequence gets 3x the gradient of one in the 3-token sequence.
        var lp = zeros(2, 3, ScalarType.Float64).requires_grad_(true);
        var mask = T(1, 1, 1, 1, 0, 0).reshape(2, 3);
        var o = new PpoClipOptions { Aggregation = LossAggregation.SeqMeanTokenSumNorm, TokenSumNormalizer = 5 };
        PolicyLoss.Compute(lp, zeros(2, 3, ScalarType.Float64), T(1, 1), mask, o).Loss.backward();
        var g = lp.grad!.data<double>().ToArray();
        // d/dlogp of -A r at r = 1 is -1 per token, / 5 (normaliser) / 2 (sequences).
        foreach (var i in new[] { 0, 1, 2, 3 }) Assert.Equal(-1.0 / 5 / 2, g[i], 12);
        Assert.Equal(0, g[4], 12);
        var lp2 = zeros(2, 3, ScalarType.Float64).requires_grad_(true);
        PolicyLoss.Compute(lp2, zeros(2, 3, ScalarType.Float64), T(1, 1), mask, o with { Aggregation = LossAggregation.SeqMeanTokenMean }).Loss.backward();
        var g2 = lp2.grad!.data<double>().ToArray();
        Assert.Equal(3 * g2[0], g2[3], 12);
    }

    [Fact]
    public void K3KlMatchesFormulaAndIsZeroAtEquality()
    {
        var lp = T(-1, -2, -0.5);
        var refLp = T(-1, -1, -3);
        var k3 = PolicyLoss.K3Kl(lp, refLp).data<double>().ToArray();
        Assert.Equal(0, k3[0], 12);
        Assert.Equal(Math.Exp(1) - 1 - 1, k3[1], 12);
        Assert.Equal(Math.Exp(-2.5) + 2.5 - 1, k3[2], 12);
    }

    [Fact]
    public void TisWeightsAreTruncatedRatiosAndStatsCountOutliers()
    {
        var old = T(-1, -1, -1, -1).reshape(1, 4);
        var sampler = T(-1, -1.1, -2, -0.5).reshape(1, 4); // ratios 1, e^0.1, e^1 (> C? no: 2.718 > 2 -> capped), e^-0.5
        var mask = T(1, 1, 1, 0).reshape(1, 4);
        var w = SamplerMismatch.Weights(old, sampler, mask).data<double>().ToArray();
        Assert.Equal(1, w[0], 12); Assert.Equal(Math.Exp(0.1), w[1], 12); Assert.Equal(2, w[2], 12); Assert.Equal(0, w[3], 12);
        var s = SamplerMismatch.Measure(old, sampler, mask);
        Assert.Equal((0 - 0.1 - 1) / 3.0, s.MeanKl, 10);
        Assert.Equal(1.0 / 3, s.OutsideFraction, 10);   // only e^1 is outside [0.8, 1.25]
        Assert.Equal(1.0 / 3, s.TruncatedFraction, 10);
        Assert.Equal(((Math.Exp(0.1) - 0.1 - 1) + (Math.E - 1 - 1)) / 3, s.MeanK3Kl, 10);
    }
}
