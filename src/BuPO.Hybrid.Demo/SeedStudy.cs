using System.Globalization;
using BuPO.Hybrid.Reports;
using System.Text;
using System.Text.Json;
using BuPO.Hybrid.RL.Training;

namespace BuPO.Hybrid.Demo;

/// <summary>One seed's demo results as read back from its report folder (results.json and the two run folders).</summary>
/// <param name="Seed">The seed.</param>
/// <param name="Dir">Its report folder.</param>
/// <param name="AvgAtK">avg@K per model name (init (untrained), SFT, GRPO, BuPO).</param>
/// <param name="Grpo">GRPO's run (its per-step metrics).</param>
/// <param name="Bupo">BuPO's run.</param>
/// <param name="BupoLayer">BuPO's block k.</param>
public sealed record SeedResult(long Seed, string Dir, IReadOnlyDictionary<string, double> AvgAtK, RunCurves Grpo, RunCurves Bupo, int BupoLayer)
{
    /// <summary>Reads a finished demo report folder.</summary>
    public static SeedResult Read(long seed, string dir)
    {
        var results = Path.Combine(dir, "results.json");
        if (!File.Exists(results)) throw new BupoException($"{dir}: no results.json (the demo of seed {seed} did not finish)");
        using var doc = JsonDocument.Parse(File.ReadAllText(results));
        var rows = doc.RootElement.GetProperty("rows").EnumerateArray()
            .ToDictionary(r => r.GetProperty(nameof(DemoPipeline.ResultRow.Model)).GetString()!, r => r.GetProperty(nameof(DemoPipeline.ResultRow.AvgAtK)).GetDouble());
        return new SeedResult(seed, dir, rows, RunCurves.Read(Path.Combine(dir, "grpo")), RunCurves.Read(Path.Combine(dir, "bupo")),
            doc.RootElement.GetProperty("bupo_layer").GetInt32());
    }
}

/// <summary>
/// The multi-seed study of <c>demo --seeds 1,2,3</c>: mean ± std of held-out avg@K per model, the paired BuPO − GRPO and
/// RL − SFT differences per seed, and the reward curves with a ±1 std band over seeds (study.md, study.json, study_reward.png).
/// </summary>
public static class SeedStudy
{
    private static readonly string[] Models = ["init (untrained)", "SFT", "GRPO", "BuPO"];

    /// <summary>Sample mean and (n − 1) standard deviation; std is NaN for one value.</summary>
    public static (double Mean, double Std) MeanStd(IReadOnlyList<double> xs)
    {
        var mean = xs.Average();
        var std = xs.Count > 1 ? Math.Sqrt(xs.Sum(x => (x - mean) * (x - mean)) / (xs.Count - 1)) : double.NaN;
        return (mean, std);
    }

    /// <summary>Writes the study files into <paramref name="outDir"/>; returns study.md's path.</summary>
    public static string Write(IReadOnlyList<SeedResult> seeds, string outDir, int k)
    {
        if (seeds.Count == 0) throw new BupoException("--seeds: no seeds");
        var sb = new StringBuilder("# bupo-hybrid demo: multi-seed study").AppendLine().AppendLine();
        sb.AppendLine(CultureInfo.InvariantCulture, $"Seeds {string.Join(", ", seeds.Select(s => s.Seed))}; each seed's full report is in `seed-N/report.md`. Held-out avg@{k}, mean ± std over seeds (n − 1):").AppendLine();
        sb.AppendLine("| model | mean | std | " + string.Join(" | ", seeds.Select(s => $"seed {s.Seed}")) + " |");
        sb.AppendLine("|---|---|---|" + string.Concat(seeds.Select(_ => "---|")));
        var json = new Dictionary<string, object>();
        foreach (var m in Models)
        {
            var xs = seeds.Select(s => s.AvgAtK[m]).ToList();
            var (mean, std) = MeanStd(xs);
            sb.AppendLine(CultureInfo.InvariantCulture, $"| {m} | {F(mean)} | {F(std)} | {string.Join(" | ", xs.Select(F))} |");
            json[m] = new { mean, std = double.IsFinite(std) ? std : (double?)null, per_seed = xs };
        }
        sb.AppendLine().AppendLine("Paired differences per seed (same SFT checkpoint, prompts and budgets):").AppendLine();
        sb.AppendLine("| seed | GRPO − SFT | BuPO − SFT | BuPO − GRPO | BuPO block k |").AppendLine("|---|---|---|---|---|");
        foreach (var s in seeds)
            sb.AppendLine(CultureInfo.InvariantCulture, $"| {s.Seed} | {Signed(s.AvgAtK["GRPO"] - s.AvgAtK["SFT"])} | {Signed(s.AvgAtK["BuPO"] - s.AvgAtK["SFT"])} | {Signed(s.AvgAtK["BuPO"] - s.AvgAtK["GRPO"])} | {s.BupoLayer} |");
        var diffs = seeds.Select(s => s.AvgAtK["BuPO"] - s.AvgAtK["GRPO"]).ToList();
        var (dm, ds) = MeanStd(diffs);
        sb.AppendLine(CultureInfo.InvariantCulture, $"| mean ± std | {Pm(seeds.Select(s => s.AvgAtK["GRPO"] - s.AvgAtK["SFT"]).ToList())} | {Pm(seeds.Select(s => s.AvgAtK["BuPO"] - s.AvgAtK["SFT"]).ToList())} | {Pm(diffs)} | |");
        json["bupo_minus_grpo"] = new { mean = dm, std = double.IsFinite(ds) ? ds : (double?)null, per_seed = diffs };
        sb.AppendLine().AppendLine("Training reward, first 5 → last 5 steps:").AppendLine();
        sb.AppendLine("| seed | GRPO | BuPO |").AppendLine("|---|---|---|");
        foreach (var s in seeds) sb.AppendLine(CultureInfo.InvariantCulture, $"| {s.Seed} | {Ends(s.Grpo)} | {Ends(s.Bupo)} |");
        sb.AppendLine().AppendLine("![reward, mean ± std over seeds](study_reward.png)").AppendLine();
        SaveBand(Path.Combine(outDir, "study_reward.png"), seeds);
        AtomicFile.WriteAllText(Path.Combine(outDir, "study.json"), JsonSerializer.Serialize(new { k, seeds = seeds.Select(s => s.Seed), avg_at_k = json }, JsonFormat.Indented));
        var path = Path.Combine(outDir, "study.md");
        AtomicFile.WriteAllText(path, sb.ToString());
        return path;
    }

    private static string Ends(RunCurves run)
    {
        var (first, last) = run.RewardEnds();
        return double.IsNaN(first) ? "-" : $"{F(first)} → {F(last)}";
    }

    private static void SaveBand(string path, IReadOnlyList<SeedResult> seeds)
    {
        var series = new List<ComparisonPlots.StepSeries>();
        foreach (var (name, pick) in new (string, Func<SeedResult, IReadOnlyList<StepMetrics>>)[] { ("GRPO", s => s.Grpo.Steps), ("BuPO", s => s.Bupo.Steps) })
        {
            var n = seeds.Min(s => pick(s).Count);
            var stats = Enumerable.Range(0, n).Select(i => MeanStd(seeds.Select(s => pick(s)[i].RewardMean).ToList())).ToArray();
            series.Add(new ComparisonPlots.StepSeries($"{name} (mean over {seeds.Count} seeds)", stats.Select(x => x.Mean).ToArray(),
                stats.Select(x => double.IsFinite(x.Std) ? x.Std : 0).ToArray()));
        }
        ComparisonPlots.StepCurves(path, series, "Training reward per step, mean ± std over seeds", "mean reward");
    }

    private static string F(double v) => RunReport.F(v);
    private static string Signed(double v)
    {
        var r = Math.Round(v, 3) + 0.0; // + 0.0: no "-0.000"
        return (r >= 0 ? "+" : "") + F(r == 0 ? 0 : r);
    }
    private static string Pm(IReadOnlyList<double> xs)
    {
        var (m, s) = MeanStd(xs);
        return $"{Signed(m)} ± {F(s)}";
    }
}
