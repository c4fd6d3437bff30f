namespace BuPO.Hybrid.Analysis;

/// <summary>The chosen boundary layer and how it was chosen.</summary>
public sealed record BoundaryLayerChoice(int Layer, bool FromRule, string Reason);

/// <summary>
/// The paper's rule for BuPO's layer (BUPO_SPEC.md §2): scanning up from block 0, the end of the first run
/// of blocks whose FFN adds entropy (ΔH_FFN &gt; τ), i.e. the last exploring block before integration
/// (ΔH_FFN ≈ 0) or convergence (&lt; 0). Qwen3-4B: blocks 0-5 &gt; 0, then ≈ 0 and &lt; 0, gives 5.
/// </summary>
public static class BoundaryLayerRule
{
    /// <summary>Default threshold τ in nats.</summary>
    public const double DefaultTau = 0.05;

    /// <summary>
    /// The fallback when no block exceeds τ: block round(L/6) - 1 (at least 0), which is the paper's k = 5
    /// for Qwen3-4B's 36 blocks.
    /// </summary>
    public static int FallbackLayer(int nLayer) => Math.Max(0, (int)Math.Round(nLayer / 6.0) - 1);

    /// <summary>Applies the rule to the per-block mean ΔH_FFN curve.</summary>
    public static BoundaryLayerChoice Find(IReadOnlyList<double> deltaFfn, double tau = DefaultTau)
    {
        ArgumentNullException.ThrowIfNull(deltaFfn);
        if (deltaFfn.Count == 0) throw new ArgumentException("empty ΔH_FFN curve", nameof(deltaFfn));
        var start = -1;
        for (var k = 0; k < deltaFfn.Count; k++)
            if (deltaFfn[k] > tau) { start = k; break; }
        if (start < 0)
        {
            var fb = FallbackLayer(deltaFfn.Count);
            return new(fb, false, $"no block has ΔH_FFN > {tau:0.###} nats; fallback k = round(L/6) - 1 = {fb}");
        }
        var end = start;
        while (end + 1 < deltaFfn.Count && deltaFfn[end + 1] > tau) end++;
        return new(end, true, $"blocks {start}..{end} have ΔH_FFN > {tau:0.###} nats; block {end} is the last before integration/convergence");
    }
}
