using BuPO.Hybrid.Bench.Training;
using BuPO.Hybrid.Model;
using static TorchSharp.torch;

namespace BuPO.Hybrid.Bench.Tests;

[Collection("bench")]
public class TrainBenchmarkTests(BenchFixture fx)
{
    [Fact]
    public void EveryModeRunsTheTimedStepsAndTheRatiosComeFromTheirMeans()
    {
        using var net = TransformerModel.FromGguf(fx.QwenTiny.Path, CPU);
        var settings = new TrainBenchmarkSettings { Batch = 2, Seq = 5, Layer = 0, Warmup = 1, Steps = 2, ChunkSize = 4 };
        var logs = new List<string>();
        var result = TrainBenchmark.Run(net, settings, logs.Add);

        Assert.Equal([TrainStepMode.Full, TrainStepMode.Reference, TrainStepMode.Bupo], result.Modes.Select(m => m.Mode));
        Assert.Equal(10, result.TokensPerStep);
        Assert.Equal(3 * (1 + 2), logs.Count); // one line per step, warm-up included
        foreach (var m in result.Modes)
        {
            Assert.Equal(2, m.StepMs.Length);
            Assert.All(m.StepMs, ms => Assert.True(ms > 0));
            Assert.Equal(m.StepMs.Average(), m.MeanMs);
            Assert.Equal(result.TokensPerStep / (m.MeanMs / 1000), result.TokensPerSecond(m), 9);
            Assert.True(double.IsFinite(m.LastLoss));
        }
        var full = result.Modes[0];
        var bupo = result.Modes[2];
        Assert.Equal(1.0, result.Speedup(full, TrainStepMode.Full));
        Assert.Equal(full.MeanMs / bupo.MeanMs, result.Speedup(bupo, TrainStepMode.Full), 12);
        // Layer 0 of 2: the bupo step trains block 0 and the embedding only, the full step every parameter.
        Assert.True(bupo.TrainedParameters < full.TrainedParameters, $"{bupo.TrainedParameters} vs {full.TrainedParameters}");
    }

    [Fact]
    public void SequentialModesAndAMissingBaselineGiveNaN()
    {
        using var net = TransformerModel.FromGguf(fx.QwenTiny.Path, CPU);
        var result = TrainBenchmark.Run(net, new TrainBenchmarkSettings { Modes = [TrainStepMode.Bupo], Batch = 1, Seq = 4, Layer = 1, Warmup = 0, Steps = 1, Sequential = true });
        var only = Assert.Single(result.Modes);
        Assert.Single(only.StepMs);
        Assert.True(double.IsNaN(result.Speedup(only, TrainStepMode.Full)));
    }

    [Fact]
    public void TheGroupShapeTrainsThePromptOncePerGroupOnTheSharedPath()
    {
        using var net = TransformerModel.FromGguf(fx.QwenTiny.Path, CPU);
        var settings = new GroupShapeSettings { Modes = [TrainStepMode.Full], Prompts = 1, Group = 3, PromptTokens = 6, ResponseTokens = 2, Warmup = 0, Steps = 1 };
        var result = TrainBenchmark.RunGroupShape(net, settings);
        Assert.Equal(2, result.Rows.Count);
        var perSeq = result.Rows.Single(r => !r.SharedPrefix);
        var shared = result.Rows.Single(r => r.SharedPrefix);
        Assert.All(result.Rows, r => Assert.Equal(1 * 3 * 2, r.ResponseTokens));
        Assert.True(shared.TrainTokens < perSeq.TrainTokens, $"{shared.TrainTokens} vs {perSeq.TrainTokens}");
        Assert.Equal(1.0, result.SpeedupVsPerSequence(perSeq));
        Assert.Equal(perSeq.MeanMs / shared.MeanMs, result.SpeedupVsPerSequence(shared), 12);
        Assert.Equal(shared.ResponseTokens / (shared.MeanMs / 1000), shared.ResponseTokensPerSecond, 9);
    }
}
