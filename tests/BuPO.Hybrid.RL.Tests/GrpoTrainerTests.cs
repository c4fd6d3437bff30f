using BuPO.Hybrid.Gguf;
using BuPO.Hybrid.Model;
using BuPO.Hybrid.RL.Algorithms;
using BuPO.Hybrid.RL.Training;
using BuPO.Hybrid.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace BuPO.Hybrid.RL.Tests;

/// <summary>A random untied llama-tiny (3 blocks, d 64) with the generated 512-token vocabulary, written once.</summary>
public sealed class TinyModelFixture : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("bupo-grpo-").FullName;
    private string? _path;

    public string Path
    {
        get
        {
            var vocabPath = TinyTrainingModels.Vocab;
            lock (this)
            {
                if (_path != null) return _path;
                var p = System.IO.Path.Combine(_dir, "llama-tiny.gguf");
                using var vocab = GgufFile.Open(vocabPath);
                RandomGgufModel.Write(p, RandomModelSpec.Named("llama-tiny") with { Seed = 3 }, vocab);
                return _path = p;
            }
        }
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }
}

/// <summary>The update side on synthetic rollouts: which parameters move, accumulation, skipped steps.</summary>
public class GrpoTrainerTests : IClassFixture<TinyModelFixture>
{
    private readonly TinyModelFixture _fx;

    public GrpoTrainerTests(TinyModelFixture fx)
    {
        _fx = fx;
        TorchRuntime.EnsureInitialized();
        torch.set_num_threads(1);
    }

    /// <summary>4 groups of 3 responses with advantages ±1 and sampler log-probs near the model's.</summary>
    private static TrainingSequence[] Synthetic(int seed, int vocab = 512)
    {
        var rng = new Random(seed);
        var list = new List<TrainingSequence>();
        for (var g = 0; g < 4; g++)
        {
            var prompt = Enumerable.Range(0, 3 + g).Select(_ => rng.Next(3, vocab)).ToArray();
            for (var j = 0; j < 3; j++)
            {
                var len = 2 + rng.Next(6);
                var resp = Enumerable.Range(0, len).Select(_ => rng.Next(3, vocab)).ToArray();
                var lp = Enumerable.Range(0, len).Select(_ => (float)(-Math.Log(vocab) + rng.NextDouble() * 0.2 - 0.1)).ToArray();
                list.Add(new TrainingSequence(g, prompt, resp, lp, j == 0 ? 1.0 : j == 1 ? -1.0 : 0.5));
            }
        }
        return list.ToArray();
    }

    private static Dictionary<string, Tensor> Snapshot(TransformerModel m) =>
        m.GgufParameters.ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone());

    internal static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.detach().eq(b).all().item<bool>();

    private static TrainOptions Options => new()
    {
        Model = "x", Lr = 1e-2, MiniBatchPrompts = 2, MicroBatchTokens = 24, WeightDecay = 0.01, Seed = 5,
    };

    [Fact]
    public void IpaStepChangesOnlyEmbeddingsBlocksUpToKAndUnembedding()
    {
        using var model = TransformerModel.FromGguf(_fx.Path);
        Assert.NotNull(model.Output); // untied: output.weight is its own tensor
        var before = Snapshot(model);
        using var trainer = new GrpoTrainer(model, Options.Grpo);
        const int k = 1;
        Assert.True(GrpoTrainer.IsIpaStep(1, k, 3));
        var stats = trainer.Update(1, Synthetic(1), layer: k, ipa: true, lr: 1e-2);
        Assert.Equal("ipa", stats.Phase);
        Assert.Equal(2, stats.OptimizerSteps);
        Assert.False(double.IsNaN(stats.EntropyLayer));
        foreach (var (name, p) in model.GgufParameters)
        {
            var changed = !Same(p, before[name]);
            var block = name.StartsWith("blk.") ? int.Parse(name.Split('.')[1]) : -1;
            var allowed = name is "token_embd.weight" or "output.weight" || (block >= 0 && block <= k);
            if (allowed && !name.EndsWith("_norm.weight")) Assert.True(changed, $"{name} should have changed");
            if (!allowed) Assert.False(changed, $"{name} must not change during an IPA step");
        }
        // The next step (phase 2) moves everything, and the optimizer state carries over.
        var stats2 = trainer.Update(2, Synthetic(2), layer: k, ipa: false, lr: 1e-2);
        Assert.Equal("grpo", stats2.Phase);
        Assert.False(Same(model.GgufParameters.Single(kv => kv.Key == "blk.2.ffn_down.weight").Value, before["blk.2.ffn_down.weight"]));
        Assert.False(Same(model.GgufParameters.Single(kv => kv.Key == "output_norm.weight").Value, before["output_norm.weight"]));
        Assert.Equal(4, trainer.Optimizer.Steps);
        foreach (var t in before.Values) t.Dispose();
    }

    [Fact]
    public void MicroBatchAccumulationEqualsOneBatch()
    {
        foreach (var agg in Enum.GetValues<LossAggregation>())
        {
            using var a = TransformerModel.FromGguf(_fx.Path, dtype: ScalarType.Float64);
            using var b = TransformerModel.FromGguf(_fx.Path, dtype: ScalarType.Float64);
            var seqs = Synthetic(3);
            using var ta = new GrpoTrainer(a, (Options with { MicroBatchTokens = 1, LossAgg = agg }).Grpo);
            using var tb = new GrpoTrainer(b, (Options with { MicroBatchTokens = 1 << 20, LossAgg = agg }).Grpo);
            var sa = ta.Update(1, seqs, null, false, 1e-3);
            var sb = tb.Update(1, seqs, null, false, 1e-3);
            Assert.Equal(sb.Loss, sa.Loss, 9);
            Assert.Equal(sb.GradNorm, sa.GradNorm, 9);
            foreach (var ((name, pa), (_, pb)) in a.GgufParameters.Zip(b.GgufParameters))
            {
                using var d = (pa - pb).abs().max();
                Assert.True(d.item<double>() < 1e-9, $"{agg}: {name} differs by {d.item<double>()}");
            }
        }
    }

    [Fact]
    public void SharedPrefixUpdateEqualsThePerSequenceUpdate()
    {
        // Full policy and an IPA step on block 1, two epochs of two mini-batches, micro-batches small enough to split groups.
        foreach (var (layer, ipa) in new[] { ((int?)null, false), (1, true) })
        {
            using var a = TransformerModel.FromGguf(_fx.Path, dtype: ScalarType.Float64);
            using var b = TransformerModel.FromGguf(_fx.Path, dtype: ScalarType.Float64);
            var seqs = Synthetic(5);
            var o = Options with { MiniBatchPrompts = 2, PpoEpochs = 2, MicroBatchTokens = 12 };
            using var ta = new GrpoTrainer(a, (o with { SharedPrefix = true }).Grpo);
            using var tb = new GrpoTrainer(b, (o with { SharedPrefix = false }).Grpo);
            var sa = ta.Update(1, seqs, layer, ipa, 1e-3);
            var sb = tb.Update(1, seqs, layer, ipa, 1e-3);
            Assert.Equal(4, sa.OptimizerSteps);
            Assert.True(sa.TrainTokens < sb.TrainTokens, $"shared prefix trained {sa.TrainTokens} tokens, per sequence {sb.TrainTokens}");
            Assert.Equal(sb.Loss, sa.Loss, 9);
            Assert.Equal(sb.GradNorm, sa.GradNorm, 9);
            Assert.Equal(sb.ClipFraction, sa.ClipFraction, 9);
            foreach (var ((name, pa), (_, pb)) in a.GgufParameters.Zip(b.GgufParameters))
            {
                using var d = (pa - pb).abs().max();
                Assert.True(d.item<double>() < 1e-9, $"layer {layer}: {name} differs by {d.item<double>()}");
            }
        }
    }

    [Fact]
    public void OnPolicyFirstMiniBatchHasUnitRatiosAndTisUsesTheSamplerLogProbs()
    {
        using var model = TransformerModel.FromGguf(_fx.Path);
        using var trainer = new GrpoTrainer(model, (Options with { MiniBatchPrompts = 4 }).Grpo);
        var stats = trainer.Update(1, Synthetic(4), null, false, 1e-3);
        Assert.Equal(1, stats.OptimizerSteps);
        Assert.Equal(0, stats.ClipFraction);
        Assert.Equal(0, stats.ApproxKl, 6);
        // Sampler log-probs near -ln(512) vs a random model's: a measurable mismatch, finite everywhere.
        Assert.True(double.IsFinite(stats.Mismatch.MeanKl));
        Assert.InRange(stats.Mismatch.OutsideFraction, 0, 1);
        Assert.True(stats.EntropyFull > 0);
        Assert.True(double.IsNaN(stats.EntropyLayer));
    }

    [Fact]
    public void NonFiniteGradientSkipsTheStep()
    {
        using var model = TransformerModel.FromGguf(_fx.Path);
        var before = Snapshot(model);
        using var trainer = new GrpoTrainer(model, (Options with { MiniBatchPrompts = 4 }).Grpo);
        var seqs = Synthetic(5).Select(s => s with { Advantage = double.NaN }).ToArray();
        var stats = trainer.Update(1, seqs, null, false, 1e-2);
        Assert.Equal(1, stats.SkippedSteps);
        Assert.Equal(0, stats.OptimizerSteps);
        foreach (var (name, p) in model.GgufParameters) Assert.True(Same(p, before[name]), name);
        foreach (var t in before.Values) t.Dispose();
    }

    [Fact]
    public void KlAndEntropyTermsRun()
    {
        using var model = TransformerModel.FromGguf(_fx.Path);
        using var reference = TransformerModel.FromGguf(_fx.Path);
        using var trainer = new GrpoTrainer(model, (Options with { KlCoef = 0.1, EntropyCoef = 0.01, MiniBatchPrompts = 4 }).Grpo, reference);
        var s1 = trainer.Update(1, Synthetic(6), 1, true, 1e-2);
        Assert.Equal(0, s1.RefKl, 9); // one mini-batch, computed before the update: the model is the reference
        var s2 = trainer.Update(2, Synthetic(6), 1, false, 1e-2);
        Assert.True(s2.RefKl > 0);
    }

    [Fact]
    public void LoraTrainsOnlyAdaptersAndMergesThem()
    {
        using var model = TransformerModel.FromGguf(_fx.Path);
        var before = Snapshot(model);
        using var lora = LoraSet.Create(model, 4, 8, ["attn_q", "ffn_down"], 11);
        Assert.Equal(6, lora.AdaptedWeights.Count()); // 3 blocks x 2 targets
        using var trainer = new GrpoTrainer(model, Options.Grpo, lora: lora);
        // IPA on block 0: only block 0's adapters (and so its two weights) move.
        var stats = trainer.Update(1, Synthetic(8), 0, true, 1e-2);
        Assert.Equal(2, stats.OptimizerSteps);
        foreach (var (name, p) in model.GgufParameters)
            Assert.Equal(name is "blk.0.attn_q.weight" or "blk.0.ffn_down.weight", !Same(p, before[name]));
        trainer.Update(2, Synthetic(9), 0, false, 1e-2);
        foreach (var (name, p) in model.GgufParameters)
            Assert.Equal(name.EndsWith("attn_q.weight") || name.EndsWith("ffn_down.weight"), !Same(p, before[name]));
        // W = W0 + (alpha / r) B A.
        var a = lora.Parameters.Single(kv => kv.Key == "blk.2.ffn_down.weight.lora_a").Value;
        var b = lora.Parameters.Single(kv => kv.Key == "blk.2.ffn_down.weight.lora_b").Value;
        var w = model.GgufParameters.Single(kv => kv.Key == "blk.2.ffn_down.weight").Value;
        using var loraScale = 2.0.ToScalar();
        using (var expected = before["blk.2.ffn_down.weight"].add(b.matmul(a), loraScale))
        using (var d = (w - expected).abs().max())
            Assert.True(d.item<float>() < 1e-6);
        // The adapter file is what llama.cpp reads: ggml shapes [in, r] and [r, out].
        var path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"bupo-lora-{Guid.NewGuid():N}.gguf");
        try
        {
            lora.WriteGguf(path);
            using var f = GgufFile.Open(path);
            Assert.Equal("adapter", f.GetString("general.type"));
            Assert.Equal("lora", f.GetString("adapter.type"));
            var ta = f.FindTensor("blk.2.ffn_down.weight.lora_a")!;
            var tb = f.FindTensor("blk.2.ffn_down.weight.lora_b")!;
            Assert.Equal([128L, 4L], ta.Shape);
            Assert.Equal([4L, 64L], tb.Shape);
        }
        finally { File.Delete(path); }
        foreach (var t in before.Values) t.Dispose();
    }

    [Fact]
    public void LayerOutsideTheModelIsAnError()
    {
        using var model = TransformerModel.FromGguf(_fx.Path);
        using var trainer = new GrpoTrainer(model, Options.Grpo);
        var e = Assert.Throws<BupoException>(() => trainer.Update(1, Synthetic(7), 3, true, 1e-3));
        Assert.Contains("0..2", e.Message);
    }
}
