using System.Text.Json;
using System.Text.RegularExpressions;
using BuPO.Hybrid.Data;
using BuPO.Hybrid.RL.Training;
using BuPO.Hybrid.Tests.Support;
using BuPO.Hybrid.RL.Rewards;

namespace BuPO.Hybrid.RL.Tests;

[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class TrainingRunCollection
{
    public const string Name = "training runs";
}

/// <summary>
/// End to end on CPU with the real stories260K: llama.cpp rollouts, TorchSharp updates, Q8_0 weight sync.
/// The reward (a story that mentions a boy) starts near 0.2 and is easy to raise.
/// </summary>
[Collection(TrainingRunCollection.Name)]
public sealed class TrainingRunTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("bupo-train-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    private static readonly PromptItem[] Prompts =
        new[] { "Once upon a time", "Once upon a time, there was", "One day", "Once upon a time, in a small house" }
        .Select((p, i) => new PromptItem($"story-{i}", p, null)).ToArray();

    internal static readonly DelegateReward MentionsBoy = new((_, r) => Regex.IsMatch(r, @"\bboy\b", RegexOptions.IgnoreCase) ? 1.0 : 0.0, "mentions-boy");

    /// <summary>The run's settings; the model is a random one of stories260K's shape unless a test needs what stories260K
    /// learns (a reward that rises), then <paramref name="model"/> is stories260K itself.</summary>
    private TrainOptions Options(string name, int steps, long seed, string? model = null) => new()
    {
        Model = model ?? TinyTrainingModels.StoriesShaped,
        Output = Path.Combine(_dir, name),
        Steps = steps,
        PromptsPerStep = 4,
        SamplesPerPrompt = 8,
        MaxResponseTokens = 24,
        MiniBatchPrompts = 2,
        Lr = 1e-3,
        Seed = seed,
        Threads = 1,
        TrainThreads = 1,
        Parallel = 32,
        PromptTemplate = "raw",
        CheckpointEvery = 0,
        KeepCheckpoints = 0,
    };

    private sealed class Recorder(Action<StepMetrics>? onStep = null) : ITrainingObserver
    {
        public List<StepMetrics> Steps { get; } = [];
        public void OnStep(StepMetrics metrics, TrainOptions options)
        {
            Steps.Add(metrics);
            onStep?.Invoke(metrics);
        }
    }

    [Fact]
    public void GrpoRaisesTheRewardSyncsAndWritesCompleteMetrics()
    {
        var o = Options("grpo", 8, seed: 2, model: SharedAssets.RequireFile(SharedAssets.StoriesModel));
        var result = TrainingRun.Run(o, MentionsBoy, Prompts);
        Assert.False(result.Cancelled);
        Assert.Equal(8, result.Steps.Count);
        var first = result.Steps.Take(2).Average(s => s.RewardMean);
        var last = result.Steps.TakeLast(2).Average(s => s.RewardMean);
        Assert.True(last > first + 0.2, $"reward did not improve: first two steps {first:0.000}, last two {last:0.000}");
        // Weight sync after every step: Q8_0 files exported and loaded by the sampler.
        Assert.All(result.Steps, s => Assert.True(s.Synced && s.SyncSeconds > 0));
        Assert.True(File.Exists(result.SamplerGguf));
        Assert.EndsWith("step-000008.Q8_0.gguf", result.SamplerGguf);
        // The Q8_0 sampler stays close to the fp32 trainer.
        Assert.All(result.Steps, s => Assert.InRange(Math.Abs(s.MismatchKl), 0, 0.05));
        // Metrics: 8 step lines with every field, and the CSV.
        var lines = MetricsWriter.ReadSteps(result.MetricsJsonl);
        Assert.Equal(Enumerable.Range(1, 8), lines.Select(l => l.Step));
        using (var doc = JsonDocument.Parse(File.ReadLines(result.MetricsJsonl).First()))
            foreach (var name in StepMetrics.ColumnNames) Assert.True(doc.RootElement.TryGetProperty(name, out _), name);
        foreach (var s in lines)
        {
            Assert.Equal("grpo", s.Phase);
            Assert.True(s.RolloutTokensPerSecond > 0 && s.TrainTokensPerSecond > 0);
            Assert.True(double.IsFinite(s.EntropyFull) && double.IsFinite(s.GradNorm) && double.IsFinite(s.ClipFraction));
            Assert.True(s.RolloutSeconds > 0 && s.TrainSeconds > 0 && s.StepSeconds >= s.RolloutSeconds + s.TrainSeconds);
        }
        Assert.Equal(9, File.ReadAllLines(result.MetricsCsv).Length);
        // One optimizer_steps line per step: 2 mini-batches of 2 prompts each, in order.
        var optLines = File.ReadLines(result.MetricsJsonl).Where(l => l.Contains("\"event\":\"optimizer_steps\"")).ToList();
        Assert.Equal(8, optLines.Count);
        foreach (var l in optLines)
        {
            using var doc = JsonDocument.Parse(l);
            Assert.Equal(2, doc.RootElement.GetProperty("clip_fraction").GetArrayLength());
            Assert.Equal(2, doc.RootElement.GetProperty("grad_norm").GetArrayLength());
        }
        // TensorBoard: one event file of TFRecords, with a reward/mean scalar for every step.
        var events = Directory.GetFiles(Path.Combine(o.Output, "tensorboard"), "events.out.tfevents.*");
        Assert.Single(events);
        var records = TfRecords(File.ReadAllBytes(events[0]));
        Assert.Equal(8, records.Count(r => Contains(r, "reward/mean"u8)));
        Assert.Equal(16, records.Count(r => Contains(r, "optimizer/grad_norm"u8)));
        // The final checkpoint; a new run into the same folder is refused.
        Assert.True(File.Exists(Path.Combine(result.LastCheckpoint!, "state.json")));
        var again = Assert.Throws<BupoException>(() => TrainingRun.Run(o, MentionsBoy, Prompts));
        Assert.Contains("--resume latest", again.Message);
    }

    /// <summary>The payloads of a TFRecord file: [u64 length][u32 crc][payload][u32 crc] each.</summary>
    private static List<byte[]> TfRecords(byte[] file)
    {
        var list = new List<byte[]>();
        for (var at = 0; at < file.Length;)
        {
            var len = (int)BitConverter.ToUInt64(file, at);
            Assert.InRange(at + 12 + len + 4, 0, file.Length);
            list.Add(file.AsSpan(at + 12, len).ToArray());
            at += 12 + len + 4;
        }
        return list;
    }

    private static bool Contains(byte[] haystack, ReadOnlySpan<byte> needle) => haystack.AsSpan().IndexOf(needle) >= 0;

    [Theory]
    [InlineData(0)]
    [InlineData(4)]
    public void CancelledRunResumesBitIdentically(int loraRank)
    {
        // Reference: 4 uninterrupted BuPO steps (IPA on block 2 for steps 1-2, then GRPO), full or LoRA.
        var o = Options("full", 4, seed: 3) with { BupoLayer = "2", BupoSteps = 2, LoraRank = loraRank, Lr = loraRank > 0 ? 1e-2 : 1e-3 };
        var full = TrainingRun.Run(o, MentionsBoy, Prompts);
        Assert.Equal(["ipa", "ipa", "grpo", "grpo"], full.Steps.Select(s => s.Phase));

        // The same run cancelled after step 2 (as Ctrl+C does): it stops and saves a checkpoint of step 2.
        using var cts = new CancellationTokenSource();
        var o2 = o with { Output = Path.Combine(_dir, "cut") };
        var cut = TrainingRun.Run(o2, MentionsBoy, Prompts, new Recorder(m => { if (m.Step == 2) cts.Cancel(); }), cts.Token);
        Assert.True(cut.Cancelled);
        Assert.Equal(2, cut.LastStep);
        Assert.EndsWith("step-000002", cut.LastCheckpoint);
        Assert.True(File.Exists(Path.Combine(cut.LastCheckpoint!, loraRank > 0 ? "adapter.gguf" : "sampler.gguf")));

        // Resume: steps 3 and 4 are exactly the uninterrupted run's.
        var resumed = TrainingRun.Run(o2 with { Resume = "latest" }, MentionsBoy, Prompts);
        Assert.Equal([3, 4], resumed.Steps.Select(s => s.Step));
        for (var i = 0; i < 2; i++)
        {
            var a = full.Steps[2 + i];
            var b = resumed.Steps[i];
            Assert.Equal(a.RewardMean, b.RewardMean);
            Assert.Equal(a.ResponseLengthMean, b.ResponseLengthMean);
            Assert.Equal(a.Loss, b.Loss);
            Assert.Equal(a.GradNorm, b.GradNorm);
            Assert.Equal(a.EntropyFull, b.EntropyFull);
            Assert.Equal(a.EntropyLayer, b.EntropyLayer);
            Assert.Equal(a.ClipFraction, b.ClipFraction);
            Assert.Equal(a.ApproxKl, b.ApproxKl);
            Assert.Equal(a.MismatchKl, b.MismatchKl);
        }
        Assert.Equal(File.ReadAllBytes(Path.Combine(full.LastCheckpoint!, "model.bin")), File.ReadAllBytes(Path.Combine(resumed.LastCheckpoint!, "model.bin")));
        Assert.Equal(File.ReadAllBytes(Path.Combine(full.LastCheckpoint!, "optimizer.bin")), File.ReadAllBytes(Path.Combine(resumed.LastCheckpoint!, "optimizer.bin")));
        Assert.Equal(File.ReadAllBytes(full.LoraAdapter ?? full.SamplerGguf), File.ReadAllBytes(resumed.LoraAdapter ?? resumed.SamplerGguf));
        // The resumed output's metrics hold each step once.
        Assert.Equal([1, 2, 3, 4], MetricsWriter.ReadSteps(resumed.MetricsJsonl).Select(s => s.Step));
    }

    [Fact]
    public void LoraRunRaisesTheReward()
    {
        var o = Options("lora-learns", 8, seed: 2, model: SharedAssets.RequireFile(SharedAssets.StoriesModel)) with { LoraRank = 8, LoraAlpha = 16, Lr = 1e-2 };
        var result = TrainingRun.Run(o, MentionsBoy, Prompts);
        var first = result.Steps.Take(2).Average(s => s.RewardMean);
        var last = result.Steps.TakeLast(2).Average(s => s.RewardMean);
        Assert.True(last > first + 0.2, $"reward did not improve: first two steps {first:0.000}, last two {last:0.000}");
    }

    [Fact]
    public void LoraRunHotSwapsAdaptersThatMatchTheTrainer()
    {
        // Any model shows whether llama.cpp applies the adapters as the trainer does; a high learning rate makes them
        // grow fast, so a misread adapter would show as sampler/trainer drift within these steps.
        // The reward (the share of the letter e) differs within every group on a random model, so every step moves the adapters.
        var shareOfE = new DelegateReward((_, r) => r.Length == 0 ? 0.0 : r.Count(c => c is 'e' or 'E') / (double)r.Length, "share-of-e");
        var o = Options("lora", 6, seed: 2) with { LoraRank = 8, LoraAlpha = 16, Lr = 1e-2 };
        var result = TrainingRun.Run(o, shareOfE, Prompts);
        Assert.All(result.Steps, s => Assert.True(s.GradNorm > 0 && s.ZeroAdvantageGroups < 1, $"step {s.Step} did not move the adapters"));
        // The sampler kept the source GGUF and applied the adapters.
        Assert.Equal(Path.GetFullPath(o.Model!), Path.GetFullPath(result.SamplerGguf));
        Assert.EndsWith("step-000006.lora.gguf", result.LoraAdapter);
        Assert.All(result.Steps, s => Assert.True(s.Synced));
        Assert.All(result.Steps, s => Assert.InRange(Math.Abs(s.MismatchKl), 0, 2e-3));
        Assert.All(result.Steps, s => Assert.InRange(s.MismatchOutsideFraction, 0, 0.01));
    }

    [Fact]
    public void AutoLayerRecordsTheChoiceAndCurve()
    {
        var o = Options("auto", 1, seed: 1) with { BupoLayer = "auto", BupoSteps = 1, AutoLayerPrompts = 4, AutoLayerMaxTokens = 16 };
        var result = TrainingRun.Run(o, MentionsBoy, Prompts);
        Assert.NotNull(result.LayerAnalysis);
        Assert.Equal(result.LayerAnalysis!.Layer, result.BupoLayer);
        Assert.Equal(5, result.LayerAnalysis.DeltaFfn.Length);
        Assert.True(result.LayerAnalysis.Tokens > 0);
        using var doc = JsonDocument.Parse(File.ReadLines(result.MetricsJsonl).First());
        Assert.Equal("bupo_layer_auto", doc.RootElement.GetProperty("event").GetString());
        Assert.Equal(result.BupoLayer, doc.RootElement.GetProperty("layer").GetInt32());
        Assert.Equal(5, doc.RootElement.GetProperty("delta_ffn").GetArrayLength());
        Assert.Equal("ipa", result.Steps[0].Phase);
        Assert.Equal(result.BupoLayer, result.Steps[0].BupoLayer);
    }
}
