using System.Text.Json;
using BuPO.Hybrid.Demo;
using BuPO.Hybrid.RL.Training;

namespace BuPO.Hybrid.Demo.Tests;

/// <summary><c>demo --seeds</c>'s study: mean ± std and paired differences from the seed folders' own files.</summary>
public sealed class SeedStudyTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("bupo-study-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    private string Seed(long seed, double sft, double grpo, double bupo)
    {
        var dir = Path.Combine(_dir, $"seed-{seed}");
        foreach (var run in new[] { "grpo", "bupo" })
        {
            var rd = Path.Combine(dir, run);
            Directory.CreateDirectory(rd);
            using var w = new MetricsWriter(rd, null);
            for (var s = 1; s <= 6; s++) w.Write(new StepMetrics { Step = s, RewardMean = seed * 0.1 + s * 0.01, BupoLayer = run == "bupo" ? 3 : -1 });
        }
        var rows = new[] { ("init (untrained)", 0.0), ("SFT", sft), ("GRPO", grpo), ("BuPO", bupo) }
            .Select(r => new { Model = r.Item1, AvgAtK = r.Item2 });
        File.WriteAllText(Path.Combine(dir, "results.json"), JsonSerializer.Serialize(new { k = 8, bupo_layer = 3, rows }));
        return dir;
    }

    [Fact]
    public void MeanStdAndPairedDifferencesMatchHandComputedValues()
    {
        var seeds = new[] { SeedResult.Read(1, Seed(1, 0.40, 0.50, 0.46)), SeedResult.Read(2, Seed(2, 0.50, 0.56, 0.60)) };
        var md = File.ReadAllText(SeedStudy.Write(seeds, _dir, 8));
        // GRPO: mean (0.50 + 0.56) / 2 = 0.53, std sqrt(((0.03)^2 * 2) / 1) = 0.042.
        Assert.Contains("| GRPO | 0.530 | 0.042 | 0.500 | 0.560 |", md);
        Assert.Contains("| 1 | +0.100 | +0.060 | -0.040 | 3 |", md);
        Assert.Contains("| 2 | +0.060 | +0.100 | +0.040 | 3 |", md);
        Assert.Contains("| mean ± std | +0.080 ± 0.028 | +0.080 ± 0.028 | +0.000 ± 0.057 | |", md);
        // Reward, first 5 → last 5 of seed 1: mean of 0.11..0.15 → mean of 0.12..0.16.
        Assert.Contains("| 1 | 0.130 → 0.140 | 0.130 → 0.140 |", md);
        Assert.True(File.Exists(Path.Combine(_dir, "study_reward.png")));
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(_dir, "study.json")));
        Assert.Equal(0.0, doc.RootElement.GetProperty("avg_at_k").GetProperty("bupo_minus_grpo").GetProperty("mean").GetDouble(), 12);
        Assert.Throws<BupoException>(() => SeedResult.Read(3, Path.Combine(_dir, "seed-3")));
    }
}
