using System.Globalization;
using System.Text;
using System.Text.Json;
using BuPO.Hybrid.Analysis;
using ScottPlot;

namespace BuPO.Hybrid.Reports;

/// <summary>Writes an <see cref="AnalysisResult"/> as JSON, CSV and PNG/SVG plots (ScottPlot).</summary>
public static class AnalysisReportWriter
{
    /// <summary>The JSON options of the documented analyze format.</summary>
    public static readonly JsonSerializerOptions JsonOptions = JsonFormat.Indented;

    /// <summary>Serializes the result as the documented JSON.</summary>
    public static string ToJson(AnalysisResult result) => JsonSerializer.Serialize(result, JsonOptions);

    /// <summary>Reads an analyze JSON document back.</summary>
    public static AnalysisResult FromJson(string json) =>
        JsonSerializer.Deserialize<AnalysisResult>(json, JsonOptions) ?? throw new BupoException("empty analysis JSON");

    /// <summary>Writes the JSON atomically.</summary>
    public static void WriteJson(AnalysisResult result, string path) => AtomicFile.WriteAllText(path, ToJson(result));

    /// <summary>One row per block with every per-block metric.</summary>
    public static string ToCsv(AnalysisResult result)
    {
        var sb = new StringBuilder("index,entropy,entropy_std,attention_entropy,ffn_entropy,attention_input_entropy,ffn_input_entropy,delta_layer,delta_attention,delta_ffn,attention_entropy_std,ffn_entropy_std\n");
        foreach (var l in result.Layers)
            sb.AppendLine(string.Join(',', new[] { l.Index, l.Entropy, l.EntropyStd, l.AttentionEntropy, l.FfnEntropy, l.AttentionInputEntropy, l.FfnInputEntropy, l.DeltaLayer, l.DeltaAttention, l.DeltaFfn, l.AttentionEntropyStd, l.FfnEntropyStd }
                .Select(v => Convert.ToString(v, CultureInfo.InvariantCulture))));
        return sb.ToString();
    }

    /// <summary>
    /// Writes JSON, CSV and plots into <paramref name="dir"/>; returns the files written. The heatmap needs
    /// <see cref="AnalysisResult.PerToken"/>; with <paramref name="perTokenInJson"/> false it is drawn but left out of the JSON.
    /// </summary>
    public static IReadOnlyList<string> WriteAll(AnalysisResult result, string dir, string baseName = "analysis", bool perTokenInJson = true)
    {
        Directory.CreateDirectory(dir);
        var files = new List<string>();
        var json = Path.Combine(dir, baseName + ".json");
        WriteJson(perTokenInJson ? result : result with { PerToken = null }, json); files.Add(json);
        var csv = Path.Combine(dir, baseName + ".csv");
        AtomicFile.WriteAllText(csv, ToCsv(result)); files.Add(csv);
        foreach (var (name, plot) in Plots(result))
        {
            foreach (var ext in new[] { ".png", ".svg" })
            {
                var p = Path.Combine(dir, $"{baseName}_{name}{ext}");
                AtomicFile.Write(p, tmp =>
                {
                    // ScottPlot picks the format from the extension: save under a matching temp name.
                    var t = tmp + ext;
                    if (ext == ".png") plot.SavePng(t, 900, 560); else plot.SaveSvg(t, 900, 560);
                    File.Move(t, tmp, overwrite: true);
                });
                files.Add(p);
            }
        }
        return files;
    }

    /// <summary>The plots: entropy by layer, the paper's entropy flow, entropy change per module, and the positions x layers heatmap.</summary>
    public static IEnumerable<(string Name, Plot Plot)> Plots(AnalysisResult r)
    {
        double[] xs = r.Layers.Select(l => (double)l.Index).ToArray();
        var title = $"{Path.GetFileName(r.Model)} ({r.Architecture}, norm={r.Norm}, engine={r.Engine}, positions={r.Positions}, {r.PositionCount} averaged)";

        var p1 = new Plot();
        AddLine(p1, xs, r.Layers.Select(l => l.Entropy), "layer policy H(H^k)");
        AddLine(p1, xs, r.Layers.Select(l => l.AttentionEntropy), "attention H(A^k)");
        AddLine(p1, xs, r.Layers.Select(l => l.FfnEntropy), "FFN H(F^k)");
        var fin = p1.Add.HorizontalLine(r.FinalEntropy); fin.LegendText = "final policy"; fin.LinePattern = LinePattern.Dashed;
        Finish(p1, "Internal policy entropy by block\n" + title, "block (0-based)", "entropy (nats)");
        yield return ("entropy", p1);

        // Entropy flow through each block: input residual -> attention -> FFN -> output residual.
        var p2 = new Plot();
        var prev = r.Layers.Select((l, i) => i == 0 ? r.EmbeddingEntropy : r.Layers[i - 1].Entropy);
        AddLine(p2, xs, prev, "H(H^{k-1}) block input");
        AddLine(p2, xs, r.Layers.Select(l => l.AttentionEntropy), "H(A^k) attention output");
        AddLine(p2, xs, r.Layers.Select(l => l.FfnEntropy), "H(F^k) FFN output");
        AddLine(p2, xs, r.Layers.Select(l => l.Entropy), "H(H^k) block output");
        Finish(p2, "Entropy flow per block\n" + title, "block (0-based)", "entropy (nats)");
        yield return ("flow", p2);

        var p3 = new Plot();
        AddLine(p3, xs, r.Layers.Select(l => l.DeltaLayer), "ΔH layer");
        AddLine(p3, xs, r.Layers.Select(l => l.DeltaAttention), "ΔH attention");
        AddLine(p3, xs, r.Layers.Select(l => l.DeltaFfn), "ΔH FFN");
        p3.Add.HorizontalLine(0).Color = Colors.Gray;
        var b = p3.Add.VerticalLine(r.BoundaryLayer); b.LegendText = $"boundary layer {r.BoundaryLayer}"; b.LinePattern = LinePattern.Dotted;
        Finish(p3, "Entropy change per module\n" + title, "block (0-based)", "ΔH (nats)");
        yield return ("delta", p3);

        if (r.PerToken is { Count: > 0 } perToken)
        {
            var rows = perToken.SelectMany(s => s).Take(512).ToArray();
            if (rows.Length > 0)
            {
                var data = new double[rows.Length, rows[0].Length];
                for (var i = 0; i < rows.Length; i++)
                    for (var j = 0; j < rows[i].Length; j++) data[i, j] = rows[i][j];
                var p4 = new Plot();
                var hm = p4.Add.Heatmap(data);
                hm.FlipVertically = true;
                p4.Add.ColorBar(hm).Label = "entropy (nats)";
                Finish(p4, "Layer policy entropy, positions x blocks\n" + title,
                    r.Layers.Count == r.NLayer ? "block (0-based)" : "analyzed block (i-th of the layers list)", "analyzed position (sequences one after another)");
                yield return ("heatmap", p4);
            }
        }
    }

    private static void AddLine(Plot p, double[] xs, IEnumerable<double> ys, string label)
    {
        var s = p.Add.Scatter(xs, ys.ToArray());
        s.LegendText = label;
        s.MarkerSize = 5;
    }

    private static void Finish(Plot p, string title, string x, string y)
    {
        p.Title(title, 12);
        p.XLabel(x); p.YLabel(y);
        p.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { IntegerTicksOnly = true };
        p.ShowLegend(Alignment.UpperRight);
    }
}
