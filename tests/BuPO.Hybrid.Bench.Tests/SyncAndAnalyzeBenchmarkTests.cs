using BuPO.Hybrid.Analysis;
using BuPO.Hybrid.Bench.LensAnalysis;
using BuPO.Hybrid.Bench.Sync;
using BuPO.Hybrid.Model;

namespace BuPO.Hybrid.Bench.Tests;

[Collection("bench")]
public class SyncAndAnalyzeBenchmarkTests(BenchFixture fx)
{
    [Fact]
    public void SyncTimesEveryStageOfEveryTypeAndKeepsTheFilesWhenAsked()
    {
        var dir = Directory.CreateTempSubdirectory("bupo-bench-sync-test-").FullName;
        try
        {
            var settings = new SyncBenchmarkSettings { Types = ["F16", "Q4_K_M"], Rounds = 2, GpuLayers = 0, Threads = 1, OutDir = dir, Keep = true };
            var logs = new List<string>();
            var result = SyncBenchmark.Run(fx.QwenTiny.Path, settings, logs.Add);
            Assert.Equal(["F16", "Q4_K_M"], result.Types.Select(t => t.Type));
            Assert.Equal(4, logs.Count); // two rounds of two types
            Assert.Equal(dir, result.Directory);
            var f16 = result.Types[0];
            var q4 = result.Types[1];
            Assert.Null(f16.QuantizeSeconds);   // encoded directly
            Assert.NotNull(q4.QuantizeSeconds); // an F16 export, then llama_model_quantize
            foreach (var t in result.Types)
            {
                Assert.Equal(new FileInfo(Path.Combine(dir, $"sync-{t.Type}.gguf")).Length, t.Bytes);
                Assert.Equal(t.ExportSeconds + (t.QuantizeSeconds ?? 0) + t.LoadSeconds + t.FirstDecodeSeconds, t.TotalSeconds, 12);
            }
            Assert.Equal(1.0, result.Types.Min(result.VsFastest), 12);
            Assert.True(result.TrainerLoadSeconds > 0);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void BestOfRoundsTakesEachStagesMinimum()
    {
        var a = new SyncTypeResult("Q4_K_M", 10, 1.0, 4.0, 2.0, 0.5);
        var b = new SyncTypeResult("Q4_K_M", 10, 3.0, 1.0, 1.0, 0.7);
        var best = a.Best(b);
        Assert.Equal(new SyncTypeResult("Q4_K_M", 10, 1.0, 1.0, 1.0, 0.5), best);
        Assert.Equal(3.5, best.TotalSeconds);
    }

    [Fact]
    public void AnalyzeTimesBothEnginesOnTheGivenTokens()
    {
        var settings = new AnalyzeBenchmarkSettings { Sequences = 2, Seq = 6, ChunkSize = 4, LlamaBatch = 4, GpuLayers = 0, Threads = 1 };
        var result = AnalyzeBenchmark.Run(fx.QwenTiny, settings);
        var config = TransformerConfig.FromGguf(fx.QwenTiny.Path);
        Assert.Equal([AnalysisEngine.Torch, AnalysisEngine.Llama], result.Engines.Select(e => e.Engine));
        Assert.Equal(12, result.Tokens);
        Assert.Equal(config.LayerCount, result.LayerCount);
        Assert.Equal(5 * config.LayerCount + 2, result.LensRowsPerToken);
        var torch = result.Engines[0];
        var llama = result.Engines[1];
        Assert.True(torch.Seconds > 0 && llama.Seconds > 0);
        Assert.Equal(1.0, result.SpeedupVsTorch(torch));
        Assert.Equal(torch.Seconds / llama.Seconds, result.SpeedupVsTorch(llama), 12);
        Assert.Equal(12 / llama.Seconds, result.TokensPerSecond(llama), 9);
        Assert.Equal(12.0 * result.LensRowsPerToken / llama.Seconds, result.LensRowsPerSecond(llama), 6);
    }
}
