using BuPO.Hybrid.Model;
using BuPO.Hybrid.RL.Training;
using TorchSharp;
using static TorchSharp.torch;
using BuPO.Hybrid.RL.Algorithms;

namespace BuPO.Hybrid.RL.Tests;

public class TrainConfigTests
{
    [Fact]
    public void DefaultsAreTheReferenceSettings()
    {
        var o = new TrainOptions();
        Assert.Equal(1e-6, o.Lr);
        Assert.Equal(0.01, o.WeightDecay);
        Assert.Equal(1.0, o.GradClip);
        Assert.Equal(128, o.PromptsPerStep);
        Assert.Equal(8, o.SamplesPerPrompt);
        Assert.Equal(32, o.MiniBatchPrompts);
        Assert.Equal((0.2, 0.2, 10.0), (o.ClipLow, o.ClipHigh, o.DualClip));
        Assert.Equal("Q8_0", o.RolloutQuant);
        Assert.True(o.Tis);
        Assert.Equal(2.0, o.TisCap);
        Assert.Equal(0, o.EffectiveBupoSteps);
        Assert.Equal(30, (o with { BupoLayer = "5" }).EffectiveBupoSteps);
    }

    private static TrainSetting<T> Setting<T>(string name) => Assert.IsType<TrainSetting<T>>(TrainSettings.Find(name));

    [Fact]
    public void ConfigFileThenOverrides()
    {
        var o = TrainConfig.ApplyJson(new TrainOptions(), """{"lr": 0.001, "bupo-layer": 5, "tis": false, "stop": ["\n\n"], "model": "m.gguf"}""");
        Assert.Equal(0.001, o.Lr);
        Assert.Equal("5", o.BupoLayer);
        Assert.Equal(5, o.FixedBupoLayer);
        Assert.False(o.Tis);
        Assert.Equal(["\n\n"], o.Stop);
        // Overrides (what the CLI's typed options set) go through the settings' setters.
        o = Setting<double>("lr").Set(o, 2e-3);
        o = Setting<int?>("bupo-steps").Set(o, 7);
        Assert.Equal(0.002, o.Lr);
        Assert.Equal(7, o.EffectiveBupoSteps);
        // The printed config reads back to the same settings.
        var again = TrainConfig.ApplyJson(new TrainOptions(), TrainConfig.ToJson(o));
        Assert.Equal(TrainConfig.ToJson(o), TrainConfig.ToJson(again));
    }

    [Fact]
    public void ApplyingDoesNotChangeTheInput()
    {
        var o = new TrainOptions();
        _ = TrainConfig.ApplyJson(o, """{"lr": 0.5}""");
        _ = Setting<int>("steps").Set(o, 3);
        Assert.Equal(1e-6, o.Lr);
        Assert.Equal(300, o.Steps);
    }

    [Fact]
    public void UnknownKeyAndBadValuesNameTheSetting()
    {
        var e = Assert.Throws<BupoException>(() => TrainConfig.ApplyJson(new TrainOptions(), """{"lrr": 1}""", "cfg.json"));
        Assert.Contains("unknown config key 'lrr'", e.Message);
        Assert.Contains("'lr'", e.Message);
        e = Assert.Throws<BupoException>(() => TrainConfig.ApplyJson(new TrainOptions(), """{"steps": "many"}""", "cfg.json"));
        Assert.Contains("'steps'", e.Message);
        // A malformed --lr on the command line: TrainCommandTests.MalformedValuesAreUsageErrorsNamingTheOption.
        e = Assert.Throws<BupoException>(() => (new TrainOptions { Model = "m", BupoLayer = "x" }).Validate(needDataset: false));
        Assert.Contains("--bupo-layer", e.Message);
        e = Assert.Throws<BupoException>(() => (new TrainOptions { Model = "m", BupoSteps = 3 }).Validate(needDataset: false));
        Assert.Contains("--bupo-steps", e.Message);
        e = Assert.Throws<BupoException>(() => TrainConfig.ApplyJson(new TrainOptions { Model = "m" }, """{"loss-agg": "sum"}""", "cfg.json"));
        Assert.Contains("'loss-agg'", e.Message);
        Assert.Contains("token-mean", e.Message);
        e = Assert.Throws<BupoException>(() => (new TrainOptions { Model = "m" }).Validate(needDataset: true));
        Assert.Contains("--dataset", e.Message);
    }

    [Theory]
    [InlineData("""{"steps": 2.5}""", "'steps': expected an integer")]
    [InlineData("""{"lr": "fast"}""", "'lr': expected a number")]
    [InlineData("""{"tis": "yes"}""", "'tis': expected true or false")]
    [InlineData("""{"dtype": 16}""", "'dtype': expected float32, bf16 or bf16-pure")]
    [InlineData("""{"stop": [1]}""", "'stop': expected a list of strings")]
    [InlineData("""{"seed": null}""", "'seed': cannot be null")]
    public void AWrongTypedConfigValueNamesTheFileAndKey(string json, string expect)
    {
        var e = Assert.Throws<BupoException>(() => TrainConfig.ApplyJson(new TrainOptions(), json, "cfg.json"));
        Assert.StartsWith("cfg.json: ", e.Message);
        Assert.Contains(expect, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void ChoicesReadTheirAliasesAndWriteTheCanonicalName()
    {
        var o = TrainConfig.ApplyJson(new TrainOptions(), """{"dtype": "BFloat16", "loss-agg": "Seq-Mean-Token-Sum-Norm", "reward": "Command", "lr-schedule": "COSINE"}""");
        Assert.Equal((RewardKind.Command, LrScheduleShape.Cosine), (o.Reward, o.LrSchedule));
        Assert.Equal(TrainPrecision.BFloat16Mixed, o.Dtype);
        Assert.Equal(LossAggregation.SeqMeanTokenSumNorm, o.LossAgg);
        using var doc = System.Text.Json.JsonDocument.Parse(TrainConfig.ToJson(o));
        Assert.Equal("bf16", doc.RootElement.GetProperty("dtype").GetString());
        Assert.Equal("seq-mean-token-sum-norm", doc.RootElement.GetProperty("loss-agg").GetString());
        Assert.Equal("float32", System.Text.Json.JsonDocument.Parse(TrainConfig.ToJson(new TrainOptions())).RootElement.GetProperty("dtype").GetString());
    }

    [Fact]
    public void EveryPropertyHasExactlyOneSetting()
    {
        static string Kebab(string name) => string.Concat(name.Select((c, i) => char.IsUpper(c) && i > 0 ? "-" + char.ToLowerInvariant(c) : char.ToLowerInvariant(c).ToString()));
        var properties = typeof(TrainOptions).GetProperties(System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Instance)
            .Where(p => p.SetMethod != null).ToDictionary(p => Kebab(p.Name));
        var names = TrainSettings.All.Select(s => s.Name).ToArray();
        Assert.Equal(names.Length, names.Distinct().Count());
        Assert.Equal(properties.Keys.Order(), names.Order());
        var defaults = new TrainOptions();
        foreach (var setting in TrainSettings.All)
        {
            // The setter changes its own property and no other, and the changed value survives the config file's JSON.
            var changed = setting.Accept(new ChangedValue());
            foreach (var (name, p) in properties)
                Assert.True(Same(p.GetValue(changed), p.GetValue(defaults)) != (name == setting.Name), $"{setting.Name} set, {name} {(name == setting.Name ? "unchanged" : "changed")}");
            var read = TrainConfig.ApplyJson(new TrainOptions(), TrainConfig.ToJson(changed));
            Assert.True(Same(properties[setting.Name].GetValue(read), properties[setting.Name].GetValue(changed)), $"{setting.Name} does not read back");
        }
    }

    private static bool Same(object? a, object? b) => a is string[] x && b is string[] y ? x.SequenceEqual(y) : Equals(a, b);

    /// <summary>The default record with one setting set to a value that is not its default.</summary>
    private sealed class ChangedValue : ITrainSettingVisitor<TrainOptions>
    {
        public TrainOptions Visit<T>(TrainSetting<T> setting)
        {
            var d = setting.Default;
            object value = setting.Choices is { } c
                ? c.Names.Select(n => c.TryParse(n, out var v) ? v : d).First(v => !Equals(v, d))!
                : d switch
                {
                    int i => i + 1,
                    long l => l + 1,
                    double x => x + 0.5,
                    bool b => !b,
                    string[] a => a.Append("changed").ToArray(),
                    string s => s + "-changed",
                    null when typeof(T) == typeof(int?) => 7,
                    null => "changed",
                    _ => throw new InvalidOperationException($"no changed value for {setting.Name}"),
                };
            return setting.Set(new TrainOptions(), (T)value);
        }
    }
}

public class OptimizerAndScheduleTests
{
    static OptimizerAndScheduleTests() => torch.set_num_threads(1);

    [Fact]
    public void AdamWMatchesHandComputedSteps()
    {
        var p = new TorchSharp.Modules.Parameter(tensor(new[] { 1.0, -2.0 }, ScalarType.Float64));
        var skipped = new TorchSharp.Modules.Parameter(tensor(new[] { 3.0 }, ScalarType.Float64));
        using var opt = new AdamW([new("p", p), new("q", skipped)], 0.9, 0.999, 1e-8, 0.01);
        double[] w = [1.0, -2.0], m = [0, 0], v = [0, 0];
        double[][] grads = [[0.5, 0.1], [-0.3, 0.2]];
        for (var t = 1; t <= 2; t++)
        {
            p.grad = tensor(grads[t - 1], ScalarType.Float64);
            opt.Step(0.1);
            opt.ZeroGrad();
            for (var i = 0; i < 2; i++)
            {
                var g = grads[t - 1][i];
                w[i] *= 1 - 0.1 * 0.01;
                m[i] = 0.9 * m[i] + 0.1 * g;
                v[i] = 0.999 * v[i] + 0.001 * g * g;
                var mh = m[i] / (1 - Math.Pow(0.9, t));
                var denom = Math.Sqrt(v[i]) / Math.Sqrt(1 - Math.Pow(0.999, t)) + 1e-8;
                w[i] -= 0.1 * mh / denom;
            }
            var got = p.data<double>().ToArray();
            Assert.Equal(w[0], got[0], 12);
            Assert.Equal(w[1], got[1], 12);
        }
        // A parameter that never had a gradient is not touched, not even by weight decay.
        Assert.Equal(3.0, skipped.data<double>()[0]);
        Assert.Equal(2, opt.Steps);
    }

    [Fact]
    public void AdamWStateRoundTripsExactly()
    {
        var p = new TorchSharp.Modules.Parameter(tensor(new[] { 1f, 2f, 3f }));
        using var a = new AdamW([new("p", p)]);
        p.grad = tensor(new[] { 0.1f, -0.2f, 0.3f });
        a.Step(0.01);
        var (tensors, steps) = a.ExportState();
        var path = Path.Combine(Path.GetTempPath(), $"bupo-opt-{Guid.NewGuid():N}.bin");
        try
        {
            TensorFile.Write(path, tensors);
            var back = TensorFile.Read(path);
            using var b = new AdamW([new("p", p)]);
            b.ImportState(back, steps);
            var (t2, s2) = b.ExportState();
            Assert.Equal(steps, s2);
            for (var i = 0; i < tensors.Count; i++)
            {
                Assert.Equal(tensors[i].Name, t2[i].Name);
                Assert.True(GrpoTrainerTests.Same(tensors[i].Tensor, t2[i].Tensor));
            }
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void LearningRateSchedules()
    {
        var o = new TrainOptions { Lr = 1.0, Steps = 11, WarmupSteps = 0 };
        Assert.Equal(1.0, LrSchedule.At(o, 1));
        Assert.Equal(1.0, LrSchedule.At(o, 11));
        var w = o with { WarmupSteps = 4 };
        Assert.Equal(0.25, LrSchedule.At(w, 1));
        Assert.Equal(1.0, LrSchedule.At(w, 4));
        Assert.Equal(1.0, LrSchedule.At(w, 5));
        var c = o with { LrSchedule = LrScheduleShape.Cosine, MinLrRatio = 0.1 };
        Assert.Equal(1.0, LrSchedule.At(c, 1), 12);
        Assert.Equal(0.1 + 0.9 * 0.5, LrSchedule.At(c, 6), 12); // halfway: (6-1)/10
        Assert.Equal(0.1 + 0.9 * 0.5 * (1 + Math.Cos(Math.PI * 0.9)), LrSchedule.At(c, 10), 12);
    }

    [Fact]
    public void StepPromptsWalkSeededPermutations()
    {
        // 10 prompts, 4 per step: steps 1-2 and half of 3 are epoch 0 (a permutation), then epoch 1.
        var all = Enumerable.Range(1, 5).SelectMany(s => TrainingRun.StepPrompts(10, 4, s, 7)).ToArray();
        Assert.Equal(Enumerable.Range(0, 10), all.Take(10).Order());
        Assert.Equal(Enumerable.Range(0, 10), all.Skip(10).Take(10).Order());
        Assert.Equal(TrainingRun.StepPrompts(10, 4, 3, 7), TrainingRun.StepPrompts(10, 4, 3, 7));
        Assert.NotEqual(TrainingRun.StepPrompts(10, 4, 1, 7), TrainingRun.StepPrompts(10, 4, 1, 8));
    }
}

public class MetricsFileTests
{
    [Fact]
    public void ResumeCutsTheFilesBackToTheCheckpointStep()
    {
        var dir = Directory.CreateTempSubdirectory("bupo-metrics-").FullName;
        try
        {
            using (var w = new MetricsWriter(dir, null))
            {
                w.WriteEvent("""{"event":"bupo_layer_auto","layer":2}""");
                for (var s = 1; s <= 4; s++) w.Write(new StepMetrics { Step = s, RewardMean = s / 10.0 });
            }
            using (var w = new MetricsWriter(dir, 2)) w.Write(new StepMetrics { Step = 3, RewardMean = 0.9, EntropyLayer = double.NaN });
            var steps = MetricsWriter.ReadSteps(Path.Combine(dir, "metrics.jsonl"));
            Assert.Equal([1, 2, 3], steps.Select(s => s.Step));
            Assert.Equal(0.9, steps[2].RewardMean);
            Assert.True(double.IsNaN(steps[2].EntropyLayer));
            var lines = File.ReadAllLines(Path.Combine(dir, "metrics.jsonl"));
            Assert.Contains("bupo_layer_auto", lines[0]);
            var csv = File.ReadAllLines(Path.Combine(dir, "metrics.csv"));
            Assert.Equal(4, csv.Length);
            Assert.Equal(string.Join(",", StepMetrics.ColumnNames), csv[0]);
            Assert.StartsWith("3,", csv[3]);
            Assert.Equal(StepMetrics.ColumnNames.Count, csv[3].Split(',').Length);
        }
        finally { Directory.Delete(dir, true); }
    }
}
