using BuPO.Hybrid.Analysis;
using BuPO.Hybrid.Reports;

namespace BuPO.Hybrid.Reports.Tests;

public class AnalysisReportWriterTests
{
    private static AnalysisResult Sample() => new()
    {
        Model = "m.gguf", Architecture = "qwen3", NLayer = 3, Norm = "none", Engine = "torch",
        TokenIds = [[1, 2, 3]],
        Layers = Enumerable.Range(0, 3).Select(k => new LayerEntropy { Index = k, Entropy = 6 - k, EntropyStd = 0.1, AttentionEntropy = 5, FfnEntropy = 4 + k, FfnInputEntropy = 4, DeltaFfn = k }).ToArray(),
        FinalEntropy = 1.25, BoundaryLayer = 2, PerToken = [[[6f, 5f, 4f], [6f, 5f, 3f], [6f, 4f, 2f]]],
    };

    [Fact]
    public void JsonHasTheDocumentedFieldsAndRoundTrips()
    {
        var r = Sample();
        var json = AnalysisReportWriter.ToJson(r);
        foreach (var key in new[] { "\"model\"", "\"architecture\"", "\"n_layer\"", "\"norm\"", "\"engine\"", "\"token_ids\"", "\"layers\"", "\"index\"", "\"entropy\"", "\"entropy_std\"", "\"attention_entropy\"", "\"ffn_entropy\"", "\"final_entropy\"", "\"delta_ffn\"", "\"boundary_layer\"" })
            Assert.Contains(key, json);
        var back = AnalysisReportWriter.FromJson(json);
        Assert.Equal(r.Layers, back.Layers);
        Assert.Equal(r.FinalEntropy, back.FinalEntropy);
        Assert.Equal(r.TokenIds[0], back.TokenIds[0]);
    }

    [Fact]
    public void WriteAllWritesEveryFileNonEmpty()
    {
        var dir = Path.Combine(Path.GetTempPath(), "bupo-report-" + Guid.NewGuid().ToString("N"));
        try
        {
            var files = AnalysisReportWriter.WriteAll(Sample(), dir);
            foreach (var name in new[] { "analysis.json", "analysis.csv", "analysis_entropy.png", "analysis_flow.svg", "analysis_delta.png", "analysis_heatmap.png" })
                Assert.Contains(Path.Combine(dir, name), files);
            Assert.All(files, f => Assert.True(new FileInfo(f).Length > 100, f));
            Assert.Empty(Directory.GetFiles(dir, "*.tmp-*"));
            var csv = File.ReadAllLines(Path.Combine(dir, "analysis.csv"));
            Assert.Equal(4, csv.Length);
            Assert.StartsWith("2,4,", csv[3]);
        }
        finally { Directory.Delete(dir, true); }
    }
}
