using BuPO.Hybrid.RL.Algorithms;
using BuPO.Hybrid.RL.Evaluation;

namespace BuPO.Hybrid.RL.Tests;

public class PassAtKTests
{
    [Theory]
    [InlineData(5, 2, 1, 0.4)]          // 1 - 3/5
    [InlineData(5, 2, 2, 0.7)]          // 1 - C(3,2)/C(5,2) = 1 - 3/10
    [InlineData(5, 2, 3, 0.9)]          // 1 - C(3,3)/C(5,3) = 1 - 1/10
    [InlineData(5, 2, 4, 1.0)]          // n - c < k
    [InlineData(5, 0, 3, 0.0)]
    [InlineData(5, 5, 1, 1.0)]
    [InlineData(4, 1, 2, 0.5)]          // 1 - C(3,2)/C(4,2) = 1 - 3/6
    [InlineData(10, 3, 5, 11.0 / 12.0)] // 1 - C(7,5)/C(10,5) = 1 - 21/252
    [InlineData(16, 4, 1, 0.25)]
    [InlineData(1, 1, 1, 1.0)]
    [InlineData(1, 0, 1, 0.0)]
    public void Estimate_MatchesHandComputedValues(int n, int c, int k, double expected) =>
        Assert.Equal(expected, PassAtK.Estimate(n, c, k), 12);

    [Fact]
    public void Estimate_IsStableForLargeN()
    {
        // n = 256 overflows C(n, k) in doubles for mid k; the product form does not.
        for (var c = 0; c <= 256; c += 7)
            foreach (var k in new[] { 1, 2, 16, 64, 128, 200, 256 })
            {
                var p = PassAtK.Estimate(256, c, k);
                Assert.True(double.IsFinite(p) && p is >= 0 and <= 1, $"c={c} k={k}: {p}");
            }
        Assert.Equal(1 - (255.0 / 256), PassAtK.Estimate(256, 1, 1), 12);
        Assert.Equal(1 - (254.0 * 253) / (256.0 * 255), PassAtK.Estimate(256, 2, 2), 12);
        // pass@1 is the share correct; pass@k rises with k.
        Assert.Equal(37.0 / 256, PassAtK.Estimate(256, 37, 1), 12);
        Assert.True(PassAtK.Estimate(256, 3, 128) > PassAtK.Estimate(256, 3, 64));
        Assert.Equal(1 - (128.0 * 127 * 126) / (256.0 * 255 * 254), PassAtK.Estimate(256, 3, 128), 12);
    }

    [Theory]
    [InlineData(0, 0, 1)]
    [InlineData(5, 6, 1)]
    [InlineData(5, -1, 1)]
    [InlineData(5, 2, 0)]
    [InlineData(5, 2, 6)]
    public void Estimate_RejectsImpossibleArguments(int n, int c, int k) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => PassAtK.Estimate(n, c, k));

    [Fact]
    public void AverageAndMean_OverProblems()
    {
        var outcomes = new[] { new ProblemOutcome("a", 4, 1), new ProblemOutcome("b", 4, 4), new ProblemOutcome("c", 4, 0) };
        Assert.Equal((0.25 + 1 + 0) / 3, PassAtK.AverageAtK(outcomes), 12);
        Assert.Equal((0.25 + 1 + 0) / 3, PassAtK.Mean(outcomes, 1), 12);
        Assert.Equal((0.5 + 1 + 0) / 3, PassAtK.Mean(outcomes, 2), 12);
        Assert.Equal((1 + 1 + 0) / 3.0, PassAtK.Mean(outcomes, 4), 12);
        var e = Assert.Throws<BupoException>(() => PassAtK.Mean(outcomes, 8));
        Assert.Contains("pass@8", e.Message);
    }

    [Fact]
    public void DatasetScore_Aggregates()
    {
        var outcomes = new[] { new ProblemOutcome("a", 4, 1), new ProblemOutcome("b", 4, 2) };
        var s = DatasetScore.Aggregate("toy", outcomes);
        Assert.Equal("toy", s.Dataset);
        Assert.Equal(2, s.Problems);
        Assert.Equal(4, s.SamplesPerProblem);
        Assert.Equal(8, s.TotalSamples);
        Assert.Equal(3, s.TotalCorrect);
        Assert.Equal(0.375, s.AvgAtK, 12);
        Assert.Equal([1, 2, 4], s.PassAtKByK.Keys);
        Assert.Equal((0.5 + 5.0 / 6) / 2, s.PassAtKByK[2], 12); // 1 - C(3,2)/C(4,2); 1 - C(2,2)/C(4,2)
        Assert.Equal(1.0, s.PassAtKByK[4], 12);

        var custom = DatasetScore.Aggregate("toy", outcomes, [3]);
        Assert.Equal([3], custom.PassAtKByK.Keys);

        var other = DatasetScore.Aggregate("other", [new ProblemOutcome("x", 2, 2)]);
        Assert.Equal((0.375 + 1.0) / 2, DatasetScore.MacroAverage([s, other]), 12);
    }

    [Fact]
    public void PowersOfTwo_EndWithN()
    {
        Assert.Equal([1, 2, 4, 8, 16], PassAtK.PowersOfTwoUpTo(16));
        Assert.Equal([1, 2, 4, 8, 16, 20], PassAtK.PowersOfTwoUpTo(20));
        Assert.Equal([1], PassAtK.PowersOfTwoUpTo(1));
    }
}

public class GroupAdvantagesTests
{
    [Fact]
    public void NormalizedByUnbiasedStd()
    {
        // Group [1, 0, 0, 1]: mean 0.5, unbiased variance (4 * 0.25) / 3 = 1/3, std 0.57735.
        var a = GroupAdvantages.Compute([1, 0, 0, 1], 4);
        var std = Math.Sqrt(1.0 / 3);
        Assert.Equal(0.5 / (std + 1e-6), a[0], 12);
        Assert.Equal(-0.5 / (std + 1e-6), a[1], 12);
        Assert.Equal(0.8660239, a[0], 6);
    }

    [Fact]
    public void EachGroupUsesItsOwnStatistics()
    {
        // Groups [1, 2, 3] (mean 2, std 1) and [5, 5, 5] (all equal: 0).
        var a = GroupAdvantages.Compute([1, 2, 3, 5, 5, 5], 3);
        Assert.Equal(-1 / (1 + 1e-6), a[0], 12);
        Assert.Equal(0.0, a[1], 12);
        Assert.Equal(1 / (1 + 1e-6), a[2], 12);
        Assert.Equal([0.0, 0.0, 0.0], a[3..]);
    }

    [Fact]
    public void WithoutStd_IsRewardMinusMean()
    {
        var a = GroupAdvantages.Compute([1, 0, 0, 0, 2, 4], 3, normalizeByStd: false);
        Assert.Equal(2.0 / 3, a[0], 12);
        Assert.Equal(-1.0 / 3, a[1], 12);
        Assert.Equal(-2.0, a[3], 12);
        Assert.Equal(0.0, a[4], 12);
        Assert.Equal(2.0, a[5], 12);
    }

    [Fact]
    public void EpsAndEdgeCases()
    {
        // eps = 0 with a two-sample group [0, 1]: mean 0.5, unbiased std sqrt(0.5).
        var a = GroupAdvantages.Compute([0, 1], 2, eps: 0);
        Assert.Equal(-0.5 / Math.Sqrt(0.5), a[0], 12);
        Assert.Equal(0.5 / Math.Sqrt(0.5), a[1], 12);
        Assert.Equal([0.0, 0.0, 0.0], GroupAdvantages.Compute([1, 0, 1], 1));
        Assert.Empty(GroupAdvantages.Compute([], 8));
        Assert.Throws<ArgumentException>(() => GroupAdvantages.Compute([1, 0, 1], 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => GroupAdvantages.Compute([1, 0], 0));
    }

    [Fact]
    public void AdvantagesOfAGroupSumToZero()
    {
        var rng = new Random(7);
        var rewards = Enumerable.Range(0, 64).Select(_ => (double)rng.Next(2)).ToArray();
        var a = GroupAdvantages.Compute(rewards, 8);
        for (var g = 0; g < 8; g++) Assert.Equal(0.0, a.Skip(8 * g).Take(8).Sum(), 9);
    }
}
