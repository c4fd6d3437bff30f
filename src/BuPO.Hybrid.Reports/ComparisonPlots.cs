using BuPO.Hybrid.Analysis;
using ScottPlot;

namespace BuPO.Hybrid.Reports;

/// <summary>Plots that compare models or seeds side by side (the demo's report and its seed study draw them).</summary>
public static class ComparisonPlots
{
    /// <summary>One series of per-step values, with an optional ± band (same length as <paramref name="Mean"/>).</summary>
    /// <param name="Name">The legend text.</param>
    /// <param name="Mean">The value at steps 1, 2, ...</param>
    /// <param name="Spread">The half-width of the band at each step, or null for a line alone.</param>
    public sealed record StepSeries(string Name, IReadOnlyList<double> Mean, IReadOnlyList<double>? Spread = null);

    /// <summary>
    /// The internal layer-policy entropy per block of each analysis, with a dotted line at <paramref name="markedBlock"/>
    /// (BuPO's block k), written as a PNG (atomically).
    /// </summary>
    public static void EntropyPerBlock(string path, IReadOnlyList<(string Name, AnalysisResult Analysis)> analyses, int markedBlock, string markLabel, string title)
    {
        var plot = new Plot();
        foreach (var (name, r) in analyses)
        {
            var s = plot.Add.Scatter(r.Layers.Select(l => (double)l.Index).ToArray(), r.Layers.Select(l => l.Entropy).ToArray());
            s.LegendText = name;
        }
        var v = plot.Add.VerticalLine(markedBlock); v.LegendText = markLabel; v.LinePattern = LinePattern.Dotted;
        plot.Title(title); plot.XLabel("block"); plot.YLabel("entropy (nats)");
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { IntegerTicksOnly = true };
        plot.ShowLegend(Alignment.UpperRight);
        SavePng(path, plot);
    }

    /// <summary>Per-step curves (with their ± bands where given), written as a PNG (atomically); empty series are left out.</summary>
    public static void StepCurves(string path, IReadOnlyList<StepSeries> series, string title, string yLabel)
    {
        var plot = new Plot();
        foreach (var s in series)
        {
            if (s.Mean.Count == 0) continue;
            var xs = Enumerable.Range(1, s.Mean.Count).Select(i => (double)i).ToArray();
            var mean = s.Mean.ToArray();
            var line = plot.Add.Scatter(xs, mean);
            line.LegendText = s.Name;
            if (s.Spread is not { } spread) continue;
            var band = plot.Add.FillY(xs, mean.Zip(spread, (m, d) => m - d).ToArray(), mean.Zip(spread, (m, d) => m + d).ToArray());
            band.FillStyle.Color = line.Color.WithAlpha(0.2);
            band.LineStyle.Width = 0;
        }
        plot.Title(title); plot.XLabel("step"); plot.YLabel(yLabel);
        plot.ShowLegend(Alignment.LowerRight);
        SavePng(path, plot);
    }

    private static void SavePng(string path, Plot plot)
    {
        var png = plot.GetImageBytes(800, 500, ImageFormat.Png);
        AtomicFile.Write(path, tmp => File.WriteAllBytes(tmp, png));
    }
}
