using System.Globalization;
using System.Text;
using System.Text.Json;
using BuPO.Hybrid.RL.Training;
using ScottPlot;

namespace BuPO.Hybrid.Reports;

/// <summary>One training run as read from its folder (metrics.jsonl, config.json).</summary>
/// <param name="Name">The run's label (its folder name unless given).</param>
/// <param name="Directory">The run folder.</param>
/// <param name="Steps">The step lines written so far.</param>
/// <param name="PlannedSteps">config.json's steps, or null when it has none.</param>
/// <param name="BupoLayer">BuPO's block k from the step lines, or null for GRPO.</param>
/// <param name="BupoSteps">IPA steps from config.json (0 for GRPO).</param>
public sealed record RunCurves(string Name, string Directory, IReadOnlyList<StepMetrics> Steps, int? PlannedSteps, int? BupoLayer, int BupoSteps)
{
    /// <summary>Whether the run has written every planned step.</summary>
    public bool Finished => PlannedSteps is { } n && Steps.Count > 0 && Steps[^1].Step >= n;

    /// <summary>Mean training reward of the first / last <paramref name="n"/> steps (NaN with fewer than n steps).</summary>
    public (double First, double Last) RewardEnds(int n = 5) => Steps.Count < n
        ? (double.NaN, double.NaN)
        : (Steps.Take(n).Average(s => s.RewardMean), Steps.TakeLast(n).Average(s => s.RewardMean));

    /// <summary>
    /// Reads a run folder, finished or still running: a last metrics line that does not parse is one being written and is
    /// left out; any other bad line is an error naming the file and line.
    /// </summary>
    /// <exception cref="BupoException">No such folder, no metrics.jsonl, a malformed line.</exception>
    public static RunCurves Read(string directory, string? name = null)
    {
        var dir = Path.GetFullPath(directory);
        if (!System.IO.Directory.Exists(dir)) throw new BupoException($"{directory}: no such run folder");
        var metrics = Path.Combine(dir, "metrics.jsonl");
        if (!File.Exists(metrics)) throw new BupoException($"{directory}: no metrics.jsonl (not a train run folder, or it has not finished a step yet)");
        string[] lines;
        using (var stream = new FileStream(metrics, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete))
        using (var reader = new StreamReader(stream, Encoding.UTF8))
            lines = reader.ReadToEnd().Split('\n');
        var steps = new List<StepMetrics>();
        for (var i = 0; i < lines.Length; i++)
        {
            var line = lines[i].Trim();
            if (line.Length == 0) continue;
            try
            {
                using var doc = JsonDocument.Parse(line);
                if (doc.RootElement.TryGetProperty("event", out var ev) && ev.GetString() == "step") steps.Add(StepMetrics.FromJson(doc.RootElement));
            }
            catch (Exception e) when (e is JsonException or InvalidOperationException or KeyNotFoundException or FormatException)
            {
                if (lines.Skip(i + 1).All(l => l.Trim().Length == 0)) break; // the line being written by a running run
                throw new BupoException($"{metrics}: line {i + 1} is not a metrics line: {e.Message}");
            }
        }
        int? planned = null;
        var ipaSteps = 0;
        var config = Path.Combine(dir, "config.json");
        if (File.Exists(config))
        {
            try
            {
                using var doc = JsonDocument.Parse(File.ReadAllText(config));
                if (doc.RootElement.TryGetProperty("steps", out var st) && st.ValueKind == JsonValueKind.Number) planned = st.GetInt32();
                if (doc.RootElement.TryGetProperty("bupo-steps", out var bs) && bs.ValueKind == JsonValueKind.Number) ipaSteps = bs.GetInt32();
            }
            catch (JsonException e) { throw new BupoException($"{config}: not valid JSON: {e.Message}"); }
        }
        var layer = steps.Select(s => s.BupoLayer).FirstOrDefault(k => k >= 0, -1);
        return new RunCurves(name ?? Path.GetFileName(dir), dir, steps, planned, layer >= 0 ? layer : null, layer >= 0 ? ipaSteps : 0);
    }
}

/// <summary>
/// The curves of one or more training runs as PNG plots and a Markdown page (<c>bupo-hybrid report</c>, and the demo's
/// training curves): reward, accuracy, full and layer-k entropy, clip fraction, approx KL, sampler mismatch, tokens/s.
/// Every file is written under a temporary name and renamed.
/// </summary>
public static class RunReport
{
    /// <summary>One plotted metric: its file stem, title, axis label and value.</summary>
    public sealed record Curve(string File, string Title, string Y, Func<StepMetrics, double> Value);

    /// <summary>The curves every report has, in page order.</summary>
    public static IReadOnlyList<Curve> Curves { get; } =
    [
        new("reward", "Mean reward per step (training rollouts)", "mean reward", m => m.RewardMean),
        new("accuracy", "Accuracy per step (training rollouts)", "accuracy", m => m.Accuracy),
        new("entropy_full", "Entropy of the full policy over response tokens", "nats", m => m.EntropyFull),
        new("entropy_layer", "Entropy of block k's internal policy over response tokens", "nats", m => m.EntropyLayer),
        new("clip_fraction", "PPO clip fraction (mean over the step's optimizer steps)", "share of tokens", m => m.ClipFraction),
        new("approx_kl", "Approx KL(old ‖ new) of the update", "nats", m => m.ApproxKl),
        new("mismatch_kl", "Sampler mismatch: KL estimate trainer vs quantized sampler", "nats", m => m.MismatchKl),
        new("rollout_tokens_per_s", "Rollout throughput", "tokens/s", m => m.RolloutTokensPerSecond),
        new("train_tokens_per_s", "Trainer throughput", "tokens/s", m => m.TrainTokensPerSecond),
    ];

    /// <summary>Writes <c>report.md</c> and one PNG per curve with data into <paramref name="outDir"/>; returns report.md's path.</summary>
    public static string Write(IReadOnlyList<RunCurves> runs, string outDir, string title = "Training runs")
    {
        if (runs.Count == 0) throw new BupoException("report: no run folders given");
        Directory.CreateDirectory(outDir);
        var sb = new StringBuilder($"# {title}").AppendLine().AppendLine();
        sb.AppendLine("| run | steps | state | BuPO | reward first 5 → last 5 | last reward | last accuracy |").AppendLine("|---|---|---|---|---|---|---|");
        foreach (var r in runs)
        {
            var (first, last) = r.RewardEnds();
            var state = r.Finished ? "finished" : r.PlannedSteps is { } n ? $"running or stopped ({r.Steps.Count} of {n})" : "unknown plan";
            var bupo = r.BupoLayer is { } k ? $"block {k}, IPA steps 1-{r.BupoSteps}" : "- (GRPO)";
            var lastStep = r.Steps.Count > 0 ? r.Steps[^1] : null;
            sb.AppendLine(CultureInfo.InvariantCulture, $"| {r.Name} | {r.Steps.Count} | {state} | {bupo} | {F(first)} → {F(last)} | {F(lastStep?.RewardMean)} | {F(lastStep?.Accuracy)} |");
        }
        sb.AppendLine().AppendLine("Folders: " + string.Join(", ", runs.Select(r => $"`{r.Directory}`")) + ". Each line is one run's `metrics.jsonl`.").AppendLine();
        foreach (var c in Curves)
        {
            var path = Path.Combine(outDir, c.File + ".png");
            if (!SavePlot(path, c, runs)) continue;
            sb.AppendLine(CultureInfo.InvariantCulture, $"## {c.Title}").AppendLine().AppendLine(CultureInfo.InvariantCulture, $"![{c.File}]({c.File}.png)").AppendLine();
        }
        var report = Path.Combine(outDir, "report.md");
        AtomicFile.WriteAllText(report, sb.ToString());
        return report;
    }

    /// <summary>Plots one curve for every run that has finite values for it; false when none has.</summary>
    public static bool SavePlot(string path, Curve curve, IReadOnlyList<RunCurves> runs)
    {
        var plot = new Plot();
        var any = false;
        foreach (var r in runs)
        {
            var pts = r.Steps.Where(s => double.IsFinite(curve.Value(s))).ToArray();
            if (pts.Length == 0) continue;
            any = true;
            var sc = plot.Add.Scatter(pts.Select(s => (double)s.Step).ToArray(), pts.Select(curve.Value).ToArray());
            sc.LegendText = r.BupoLayer is { } k ? $"{r.Name} (BuPO k = {k})" : r.Name;
        }
        if (!any) return false;
        // Where each BuPO run leaves the internal policy of block k for the full policy.
        foreach (var r in runs.Where(r => r.BupoLayer != null && r.BupoSteps > 0).DistinctBy(r => r.BupoSteps))
        {
            var v = plot.Add.VerticalLine(r.BupoSteps + 0.5);
            v.LegendText = $"BuPO: IPA (steps 1-{r.BupoSteps}) | GRPO";
            v.LinePattern = LinePattern.Dotted;
        }
        plot.Title(curve.Title); plot.XLabel("step"); plot.YLabel(curve.Y);
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { IntegerTicksOnly = true };
        plot.ShowLegend(Alignment.LowerRight);
        var png = plot.GetImageBytes(800, 500, ImageFormat.Png);
        AtomicFile.Write(path, tmp => File.WriteAllBytes(tmp, png));
        return true;
    }

    /// <summary>A metric as the reports print it: three decimals, "-" for none or not finite.</summary>
    /// <summary>Three decimals, invariant; "-" for a missing or non-finite value (the reports' table cells).</summary>
    public static string F(double? v) => v is { } x && double.IsFinite(x) ? x.ToString("0.000", CultureInfo.InvariantCulture) : "-";
}
