namespace BuPO.Hybrid.RL.Evaluation;

/// <summary>The sampled outcome of one problem: <paramref name="Samples"/> responses, <paramref name="Correct"/> of them correct.</summary>
public readonly record struct ProblemOutcome(string Id, int Samples, int Correct)
{
    /// <summary>The share of correct samples (the problem's pass@1 estimate).</summary>
    public double Accuracy => Samples == 0 ? 0 : (double)Correct / Samples;
}

/// <summary>The unbiased pass@k estimator and avg@k (spec section 7).</summary>
public static class PassAtK
{
    /// <summary>
    /// <c>1 - C(n-c, k) / C(n, k)</c>: the chance that at least one of k samples drawn without replacement from n
    /// (c of them correct) is correct. Computed as <c>1 - prod_{i=n-c+1..n} (1 - k/i)</c>, exact in form and free of
    /// overflow for any n.
    /// </summary>
    public static double Estimate(int n, int c, int k)
    {
        if (n < 1) throw new ArgumentOutOfRangeException(nameof(n), n, "pass@k needs at least one sample");
        if (c < 0 || c > n) throw new ArgumentOutOfRangeException(nameof(c), c, $"the number correct must be in [0, {n}]");
        if (k < 1 || k > n) throw new ArgumentOutOfRangeException(nameof(k), k, $"k must be in [1, {n}]");
        if (c == 0) return 0.0;
        if (n - c < k) return 1.0;
        var notPassed = 1.0;
        for (var i = n - c + 1; i <= n; i++) notPassed *= 1.0 - (double)k / i;
        return 1.0 - notPassed;
    }

    /// <summary>The mean of <see cref="Estimate"/> over problems.</summary>
    public static double Mean(IReadOnlyCollection<ProblemOutcome> outcomes, int k)
    {
        if (outcomes.Count == 0) throw new ArgumentException("no problems", nameof(outcomes));
        var sum = 0.0;
        foreach (var o in outcomes)
        {
            if (k > o.Samples) throw new BupoException($"pass@{k} needs at least {k} samples per problem; problem '{o.Id}' has {o.Samples}");
            sum += Estimate(o.Samples, o.Correct, k);
        }
        return sum / outcomes.Count;
    }

    /// <summary>avg@k: the share of correct samples per problem (pass@1 over its k samples), averaged over problems.</summary>
    public static double AverageAtK(IReadOnlyCollection<ProblemOutcome> outcomes)
    {
        if (outcomes.Count == 0) throw new ArgumentException("no problems", nameof(outcomes));
        var sum = 0.0;
        foreach (var o in outcomes)
        {
            if (o.Samples < 1 || o.Correct < 0 || o.Correct > o.Samples)
                throw new ArgumentException($"problem '{o.Id}': {o.Correct} correct of {o.Samples} samples", nameof(outcomes));
            sum += o.Accuracy;
        }
        return sum / outcomes.Count;
    }

    /// <summary>1, 2, 4, ... up to <paramref name="n"/>, and n itself.</summary>
    public static IReadOnlyList<int> PowersOfTwoUpTo(int n)
    {
        var ks = new List<int>();
        for (var k = 1; k <= n && k > 0; k *= 2) ks.Add(k);
        if (n >= 1 && ks[^1] != n) ks.Add(n);
        return ks;
    }
}

/// <summary>The evaluation of one dataset: avg@K and pass@k for several k (fractions in [0, 1]).</summary>
/// <param name="Dataset">The dataset's name.</param>
/// <param name="Problems">How many problems were scored.</param>
/// <param name="SamplesPerProblem">The fewest samples any problem got (K when every problem got K).</param>
/// <param name="TotalSamples">Samples over all problems.</param>
/// <param name="TotalCorrect">Correct samples over all problems.</param>
/// <param name="AvgAtK">Mean over problems of each problem's share of correct samples.</param>
/// <param name="PassAtKByK">pass@k for each k asked.</param>
public sealed record DatasetScore(string Dataset, int Problems, int SamplesPerProblem, int TotalSamples, int TotalCorrect,
    double AvgAtK, IReadOnlyDictionary<int, double> PassAtKByK)
{
    /// <summary>Scores <paramref name="outcomes"/>; <paramref name="ks"/> defaults to 1, 2, 4, ... up to the samples per problem.</summary>
    public static DatasetScore Aggregate(string dataset, IReadOnlyCollection<ProblemOutcome> outcomes, IEnumerable<int>? ks = null)
    {
        if (outcomes.Count == 0) throw new ArgumentException($"dataset '{dataset}': no problems", nameof(outcomes));
        var avg = PassAtK.AverageAtK(outcomes);
        var minSamples = outcomes.Min(o => o.Samples);
        var byK = new SortedDictionary<int, double>();
        foreach (var k in ks ?? PassAtK.PowersOfTwoUpTo(minSamples))
        {
            if (k < 1) throw new BupoException($"pass@k: k must be positive, got {k}");
            byK[k] = PassAtK.Mean(outcomes, k);
        }
        return new DatasetScore(dataset, outcomes.Count, minSamples, outcomes.Sum(o => o.Samples), outcomes.Sum(o => o.Correct), avg, byK);
    }

    /// <summary>The mean avg@K over datasets (the "average" column of the paper's Table 1).</summary>
    public static double MacroAverage(IReadOnlyCollection<DatasetScore> scores)
    {
        if (scores.Count == 0) throw new ArgumentException("no datasets", nameof(scores));
        return scores.Average(s => s.AvgAtK);
    }
}
