namespace BuPO.Hybrid.RL.Algorithms;

/// <summary>GRPO's group-relative advantages (spec section 4).</summary>
public static class GroupAdvantages
{
    /// <summary>
    /// For each consecutive group of <paramref name="groupSize"/> rewards (the responses to one prompt):
    /// <c>(R_i - mean_g) / (std_g + eps)</c> with the unbiased (n-1) standard deviation, or <c>R_i - mean_g</c> when
    /// <paramref name="normalizeByStd"/> is false. Groups of one response get 0.
    /// </summary>
    public static double[] Compute(ReadOnlySpan<double> rewards, int groupSize, bool normalizeByStd = true, double eps = 1e-6)
    {
        if (groupSize < 1) throw new ArgumentOutOfRangeException(nameof(groupSize), groupSize, "the group size must be positive");
        if (rewards.Length % groupSize != 0)
            throw new ArgumentException($"{rewards.Length} rewards do not split into groups of {groupSize}", nameof(rewards));
        if (eps < 0 || !double.IsFinite(eps)) throw new ArgumentOutOfRangeException(nameof(eps), eps, "eps must be finite and non-negative");
        var advantages = new double[rewards.Length];
        if (groupSize == 1) return advantages;
        for (var start = 0; start < rewards.Length; start += groupSize)
        {
            var group = rewards.Slice(start, groupSize);
            var mean = 0.0;
            foreach (var r in group) mean += r;
            mean /= groupSize;
            var scale = 1.0;
            if (normalizeByStd)
            {
                var ss = 0.0;
                foreach (var r in group) ss += (r - mean) * (r - mean);
                scale = 1.0 / (Math.Sqrt(ss / (groupSize - 1)) + eps);
            }
            for (var i = 0; i < groupSize; i++) advantages[start + i] = (group[i] - mean) * scale;
        }
        return advantages;
    }
}
