namespace BuPO.Hybrid.Analysis.Tests;

public class BoundaryLayerRuleTests
{
    [Fact]
    public void Qwen3_4BLikeCurveGivesBlock5()
    {
        // Paper: Qwen3-4B FFN ΔH > 0 on layers 1-6 (blocks 0-5), ≈ 0 on 7-26, < 0 on 27-36.
        var curve = Enumerable.Range(0, 36).Select(k => k <= 5 ? 0.4 - 0.03 * k : k <= 25 ? 0.01 * Math.Sin(k) : -0.3).ToArray();
        var c = BoundaryLayerRule.Find(curve);
        Assert.True(c.FromRule);
        Assert.Equal(5, c.Layer);
    }

    [Fact]
    public void NoPositiveBlockFallsBackAndSaysSo()
    {
        var curve = Enumerable.Range(0, 36).Select(k => -0.1 * k).ToArray();
        var c = BoundaryLayerRule.Find(curve);
        Assert.False(c.FromRule);
        Assert.Equal(BoundaryLayerRule.FallbackLayer(36), c.Layer);
        Assert.Equal(5, c.Layer);
        Assert.Contains("no block", c.Reason);
    }

    [Fact]
    public void NoiseBelowTauIsIgnoredAndTheFirstRunEnds()
    {
        var rng = new Random(7);
        // Noise within ±0.04 everywhere, a real exploring run at blocks 3..8, a later second run at 15..16.
        var curve = Enumerable.Range(0, 24).Select(k => (rng.NextDouble() - 0.5) * 0.08 + (k is >= 3 and <= 8 ? 0.3 : k is 15 or 16 ? 0.5 : 0)).ToArray();
        var c = BoundaryLayerRule.Find(curve);
        Assert.Equal(8, c.Layer);
        Assert.Equal(16, BoundaryLayerRule.Find(curve, tau: 0.35).Layer); // only the later run clears a higher τ
    }

    [Fact]
    public void TauIsAnOption()
    {
        double[] curve = { 0.2, 0.1, 0.04, 0.0 };
        Assert.Equal(0, BoundaryLayerRule.Find(curve, tau: 0.15).Layer);
        Assert.Equal(1, BoundaryLayerRule.Find(curve).Layer);
        Assert.Equal(2, BoundaryLayerRule.Find(curve, tau: 0.01).Layer);
    }
}
