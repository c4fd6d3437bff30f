using BuPO.Hybrid.Reports;
using BuPO.Hybrid.Demo;
using BuPO.Hybrid.RL.Training;

namespace BuPO.Hybrid.Cli.Tests;

/// <summary><c>bupo-hybrid report</c> on run folders made by the real MetricsWriter: finished, running, malformed.</summary>
public sealed class ReportCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("bupo-report-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    /// <summary>A run folder with <paramref name="steps"/> step lines of <paramref name="planned"/>; BuPO on block 2 for 2 steps when asked.</summary>
    private string Run(string name, int steps, int planned, bool bupo, string? partialTail = null)
    {
        var dir = Path.Combine(_dir, name);
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "config.json"), $"{{\"steps\": {planned}, \"bupo-steps\": {(bupo ? 2 : 0)}}}");
        using (var w = new MetricsWriter(dir, null))
            for (var s = 1; s <= steps; s++)
            {
                w.Write(new StepMetrics
                {
                    Step = s, Phase = bupo && s <= 2 ? "ipa" : "grpo", BupoLayer = bupo ? 2 : -1, RewardMean = 0.1 * s, Accuracy = 0.1 * s,
                    EntropyFull = 1.0 / s, EntropyLayer = bupo ? 2.0 / s : double.NaN, ClipFraction = 0.01, ApproxKl = 1e-3, MismatchKl = 1e-4,
                    RolloutTokensPerSecond = 1000, TrainTokensPerSecond = 5000,
                });
                w.WriteOptimizerSteps(s, [new OptimizerStepStats(0.1, 0.01, 1e-3, 0.5, false)]);
            }
        if (partialTail != null) File.AppendAllText(Path.Combine(dir, "metrics.jsonl"), partialTail);
        return dir;
    }

    [Fact]
    public void ReportsAFinishedAndARunningRunWithTheirCurves()
    {
        var finished = Run("grpo", 6, 6, bupo: false);
        var running = Run("bupo", 3, 6, bupo: true, partialTail: "{\"event\":\"step\",\"step\":4,\"pha");
        var outDir = Path.Combine(_dir, "out");
        var (code, stdout, stderr) = CliRunner.Run("report", finished, running, "--out", outDir, "--name", "GRPO", "BuPO");
        Assert.True(code == 0, stderr);
        Assert.Contains("GRPO: 6 steps (finished)", stdout);
        Assert.Contains("BuPO: 3 steps of 6", stdout);
        var md = File.ReadAllText(Path.Combine(outDir, "report.md"));
        Assert.Contains("| GRPO | 6 | finished | - (GRPO) | 0.300 → 0.400 | 0.600 | 0.600 |", md);
        Assert.Contains("| BuPO | 3 | running or stopped (3 of 6) | block 2, IPA steps 1-2 |", md);
        foreach (var c in RunReport.Curves)
        {
            Assert.True(File.Exists(Path.Combine(outDir, c.File + ".png")), c.File);
            Assert.Contains($"({c.File}.png)", md);
        }
        Assert.Empty(Directory.GetFiles(outDir, "*.tmp*"));
    }

    [Fact]
    public void AMalformedLineBeforeTheEndAndAMissingFolderAreOneLineErrors()
    {
        var dir = Run("bad", 2, 4, bupo: false);
        var metrics = Path.Combine(dir, "metrics.jsonl");
        var lines = File.ReadAllLines(metrics).ToList();
        lines.Insert(1, "not json");
        File.WriteAllLines(metrics, lines);
        var (code, _, err) = CliRunner.Run("report", dir, "--out", Path.Combine(_dir, "o1"));
        Assert.NotEqual(0, code);
        Assert.Contains($"{metrics}: line 2 is not a metrics line", err);
        Assert.DoesNotContain("   at ", err);
        (code, _, err) = CliRunner.Run("report", Path.Combine(_dir, "nope"), "--out", Path.Combine(_dir, "o2"));
        Assert.NotEqual(0, code);
        Assert.Contains("no such run folder", err);
        (code, _, err) = CliRunner.Run("report", dir, dir, "--name", "one", "--out", Path.Combine(_dir, "o3"));
        Assert.NotEqual(0, code);
        Assert.Contains("--name: 1 names for 2 run folders", err);
    }
}
