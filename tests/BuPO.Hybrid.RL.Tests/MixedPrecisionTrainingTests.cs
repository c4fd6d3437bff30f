using BuPO.Hybrid.Model;
using BuPO.Hybrid.RL.Training;
using BuPO.Hybrid.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;
using BuPO.Hybrid.RL.Algorithms;

namespace BuPO.Hybrid.RL.Tests;

/// <summary>
/// Training under <see cref="TrainPrecision.BFloat16Mixed"/> at BuPO's learning rate (1e-6) on a random llama-tiny with a
/// vocabulary of its own (no ../shared): the float32 masters move and a fixed loss falls where pure bf16 drops the
/// updates; checkpoints hold and restore the masters; LoRA adapters and the trainer's IPA / shared-prefix /
/// checkpointed / KL paths run on float32 masters. In the training-run collection: one TorchSharp training loop at a time.
/// </summary>
[Collection(TrainingRunCollection.Name)]
public sealed class MixedPrecisionTrainingTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("bupo-mixed-train-").FullName;
    private readonly ITestOutputHelper _out;

    public MixedPrecisionTrainingTests(ITestOutputHelper output)
    {
        _out = output;
        TorchRuntime.EnsureInitialized();
        torch.set_num_threads(1);
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    private string ModelPath => OwnVocabModels.Write(_dir, "llama-tiny");

    private static TokenBatch FixedBatch()
    {
        var rng = new Random(17);
        return TokenBatch.Create(new[] { 12, 9, 15, 7 }.Select(n => Enumerable.Range(0, n).Select(_ => rng.Next(3, OwnVocabModels.VocabSize)).ToArray()).ToArray());
    }

    /// <summary>The fixed objective: mean negative log-likelihood of each next token under the full policy (float32).</summary>
    private static Tensor Nll(TransformerModel model, TokenBatch batch)
    {
        var t = batch.Tokens.shape[1];
        var fwd = model.Forward(batch, new ForwardOptions { ComputeLogits = false });
        var lp = InternalPolicyHead.FullPolicy(model).LogProbs(fwd.LastHidden.narrow(1, 0, t - 1), batch.Tokens.narrow(1, 1, t - 1));
        return -lp.masked_select(batch.Mask.narrow(1, 1, t - 1)).mean();
    }

    private static double Value(TransformerModel model, TokenBatch batch)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        return Nll(model, batch).to_type(ScalarType.Float64).item<double>();
    }

    /// <summary>One AdamW step (weight decay 0.01, as the trainer's default) on the fixed objective.</summary>
    private static void Step(TransformerModel model, AdamW optimizer, TokenBatch batch, double lr, LoraSet? lora = null)
    {
        optimizer.ZeroGrad();
        lora?.ClearBaseGrads();
        using (var scope = NewDisposeScope()) Nll(model, batch).backward();
        lora?.PropagateGrads();
        optimizer.Step(lr);
        lora?.Merge();
        optimizer.ZeroGrad();
    }

    /// <summary>The objective evaluated in float32 on <paramref name="model"/>'s current weights (masters or bf16), so both precisions are judged alike.</summary>
    private double Float32Value(TransformerModel model, TokenBatch batch)
    {
        using var f32 = TransformerModel.FromGguf(ModelPath, CPU, TrainPrecision.Float32);
        using (no_grad())
            foreach (var ((_, dst), (_, src)) in f32.GgufParameters.Zip(model.GgufParameters))
                dst.copy_(src.to_type(ScalarType.Float32));
        return Value(f32, batch);
    }

    [Fact]
    public void TenStepsAtLr1e6MoveMixedMastersAndLowerTheLossWherePureBf16DropsThem()
    {
        using var batch = FixedBatch();
        var moved = new Dictionary<TrainPrecision, (double Fraction, double MaxDelta, double Before, double After, double Before32, double After32, long Big, long BigMoved)>();
        foreach (var precision in new[] { TrainPrecision.BFloat16Mixed, TrainPrecision.BFloat16Pure })
        {
            using var model = TransformerModel.FromGguf(ModelPath, CPU, precision);
            Assert.All(model.TrainableParameters(), p => Assert.Equal(precision.ParameterType(), p.dtype));
            var before = model.GgufParameters.Select(kv => kv.Value.detach().clone()).ToArray();
            // The elements the objective reaches (embedding rows of tokens outside the batch get no gradient, and a weight
            // decay of lr·0.01 = 1e-8 of a weight is below float32's resolution too).
            using (var scope = NewDisposeScope()) Nll(model, batch).backward();
            var reached = model.GgufParameters.Select(kv => kv.Value.grad!.ne(ScalarConstants.Zero).DetachFromDisposeScope()).ToArray();
            model.zero_grad(set_to_none: true);
            var loss0 = Value(model, batch);
            var loss032 = Float32Value(model, batch);
            using var optimizer = new AdamW(model.GgufParameters);
            for (var i = 0; i < 10; i++) Step(model, optimizer, batch, 1e-6);
            long total = 0, changed = 0, big = 0, bigChanged = 0, reachedTotal = 0, reachedChanged = 0;
            double maxDelta = 0;
            using var bigThreshold = (1.0 / 256).ToScalar(); // held across the loop's ge() calls (BUPO001)
            foreach (var ((_, p), b, r) in model.GgufParameters.Zip(before, reached))
            {
                using var scope = NewDisposeScope();
                var diff = p.detach().ne(b);
                // Weights of magnitude ≥ 2^-8: half a bf16 step there is 2^-17 ≈ 7.6e-6, above ten Adam steps of 1e-6 each.
                var isBig = b.abs().ge(bigThreshold);
                total += p.numel();
                changed += diff.sum().item<long>();
                big += isBig.sum().item<long>();
                bigChanged += (diff & isBig).sum().item<long>();
                reachedTotal += r.sum().item<long>();
                reachedChanged += (diff & r).sum().item<long>();
                maxDelta = Math.Max(maxDelta, (p.detach().to_type(ScalarType.Float64) - b.to_type(ScalarType.Float64)).abs().max().item<double>());
            }
            moved[precision] = ((double)reachedChanged / reachedTotal, maxDelta, loss0, Value(model, batch), loss032, Float32Value(model, batch), big, bigChanged);
            var m = moved[precision];
            _out.WriteLine($"{precision}: {changed:N0} of {total:N0} weights changed, {reachedChanged:N0} of the {reachedTotal:N0} with a gradient ({m.Fraction:P2}); of the {big:N0} with |w| ≥ 2^-8, {bigChanged:N0} changed; max |Δw| {maxDelta:E2}; " +
                           $"loss (own compute) {m.Before:F7} -> {m.After:F7}; loss (float32 eval) {m.Before32:F7} -> {m.After32:F7} (Δ {m.After32 - m.Before32:E2})");
            foreach (var t in before.Concat(reached)) t.Dispose();
        }
        var mixed = moved[TrainPrecision.BFloat16Mixed];
        var pure = moved[TrainPrecision.BFloat16Pure];
        // With float32 masters AdamW moves every weight that has a gradient by about lr per step.
        Assert.True(mixed.Fraction > 0.99, $"mixed precision moved only {mixed.Fraction:P2} of the master weights with a gradient");
        Assert.InRange(mixed.MaxDelta, 5e-6, 2e-5); // ten steps of ~1e-6
        Assert.True(mixed.After32 < mixed.Before32, $"mixed: the float32-evaluated loss did not fall ({mixed.Before32} -> {mixed.After32})");
        Assert.True(mixed.After < mixed.Before, $"mixed: the loss it computes did not fall ({mixed.Before} -> {mixed.After})");
        // Pure bf16: updates of 1e-6 round away on every weight whose bf16 step is coarser than 2e-6.
        Assert.Equal(0, pure.BigMoved);
        Assert.True(pure.Fraction < 0.05, $"pure bf16 moved {pure.Fraction:P2} of the weights with a gradient");
        Assert.True(Math.Abs(pure.After32 - pure.Before32) < 0.1 * (mixed.Before32 - mixed.After32),
            $"pure bf16 changed the loss by {pure.After32 - pure.Before32:E2}, not much less than mixed precision's {mixed.After32 - mixed.Before32:E2}");
    }

    [Fact]
    public void MixedCheckpointSavesAndRestoresTheFloat32Masters()
    {
        using var batch = FixedBatch();
        using var model = TransformerModel.FromGguf(ModelPath, CPU, TrainPrecision.BFloat16Mixed);
        using var optimizer = new AdamW(model.GgufParameters);
        for (var i = 0; i < 2; i++) Step(model, optimizer, batch, 1e-6);
        var options = new TrainOptions { Model = ModelPath, Dtype = TrainPrecision.BFloat16Mixed };
        var dir = TrainingCheckpoint.Save(Path.Combine(_dir, "checkpoints"), 2, options, null, model, optimizer, ModelPath, samplerIsSource: true);

        // What is on disk is float32, and not the bf16 copies: after steps of 1e-6 most masters fall between bf16 values.
        var saved = TensorFile.Read(Path.Combine(dir, "model.bin"));
        try
        {
            long total = 0, offGrid = 0;
            foreach (var (name, p) in model.GgufParameters)
            {
                var t = saved[name];
                Assert.Equal(ScalarType.Float32, t.dtype);
                using var scope = NewDisposeScope();
                total += t.numel();
                offGrid += t.ne(t.to_type(ScalarType.BFloat16).to_type(ScalarType.Float32)).sum().item<long>();
            }
            _out.WriteLine($"{offGrid:N0} of {total:N0} saved weights are not bf16 values");
            Assert.True(offGrid > total / 2, $"only {offGrid} of {total} saved weights lie off the bf16 grid: the bf16 copies were saved, not the masters");
        }
        finally
        {
            foreach (var t in saved.Values) t.Dispose();
        }

        using var restored = TransformerModel.FromGguf(ModelPath, CPU, TrainPrecision.BFloat16Mixed);
        using var restoredOptimizer = new AdamW(restored.GgufParameters);
        TrainingCheckpoint.Load(dir).Restore(restored, restoredOptimizer);
        foreach (var ((name, a), (_, b)) in model.GgufParameters.Zip(restored.GgufParameters))
        {
            Assert.Equal(ScalarType.Float32, b.dtype);
            Assert.True(GrpoTrainerTests.Same(a, b), $"{name}: the restored master differs");
        }
        var (s1, n1) = optimizer.ExportState();
        var (s2, n2) = restoredOptimizer.ExportState();
        Assert.Equal(n1, n2);
        Assert.Equal(s1.Select(x => x.Name), s2.Select(x => x.Name));
        foreach (var ((name, a), (_, b)) in s1.Zip(s2))
        {
            Assert.Equal(ScalarType.Float32, b.dtype);
            Assert.True(GrpoTrainerTests.Same(a, b), $"{name}: the restored AdamW state differs");
        }
        // The resumed run continues exactly as the uninterrupted one.
        Step(model, optimizer, batch, 1e-6);
        Step(restored, restoredOptimizer, batch, 1e-6);
        foreach (var ((name, a), (_, b)) in model.GgufParameters.Zip(restored.GgufParameters))
            Assert.True(GrpoTrainerTests.Same(a, b), $"{name}: the step after the restore differs from the uninterrupted run's");
    }

    [Fact]
    public void MixedExportWritesTheFloat32Masters()
    {
        using var batch = FixedBatch();
        using var model = TransformerModel.FromGguf(ModelPath, CPU, TrainPrecision.BFloat16Mixed);
        using var optimizer = new AdamW(model.GgufParameters);
        Step(model, optimizer, batch, 1e-6);
        var outPath = Path.Combine(_dir, "export-f32.gguf");
        ModelExporter.Export(model, ModelPath, outPath, BuPO.Hybrid.Gguf.GgmlType.F32);
        using var file = BuPO.Hybrid.Gguf.GgufFile.Open(outPath);
        foreach (var (name, p) in model.GgufParameters)
        {
            var written = file.ReadTensorFloat(file.FindTensor(name)!);
            var master = p.detach().contiguous().data<float>().ToArray();
            Assert.True(master.AsSpan().SequenceEqual(written), $"{name}: the F32 export is not the float32 master");
        }
    }

    [Fact]
    public void LoraUnderMixedPrecisionTrainsFloat32Adapters()
    {
        using var batch = FixedBatch();
        using var model = TransformerModel.FromGguf(ModelPath, CPU, TrainPrecision.BFloat16Mixed);
        using var lora = LoraSet.Create(model, rank: 2, alpha: 4, targets: null, seed: 9);
        Assert.All(lora.Parameters, p => Assert.Equal(ScalarType.Float32, p.Value.dtype));
        var wq = model.Blocks[0].Wq!;
        using var wqBefore = wq.detach().clone();
        using var optimizer = new AdamW(lora.Parameters);
        var loss0 = Value(model, batch);
        for (var i = 0; i < 3; i++) Step(model, optimizer, batch, 1e-3, lora);
        var loss3 = Value(model, batch);
        _out.WriteLine($"LoRA rank 2 under mixed precision, 3 steps at lr 1e-3: loss {loss0:F6} -> {loss3:F6}");
        var b = lora.Parameters.Single(kv => kv.Key == "blk.0.attn_q.weight.lora_b").Value;
        Assert.True(b.abs().max().item<float>() > 0, "lora_b stayed zero: the adapters got no update");
        Assert.Equal(ScalarType.Float32, wq.dtype);
        Assert.False(GrpoTrainerTests.Same(wq, wqBefore), "the merged float32 weight W0 + s·B·A did not change");
        Assert.True(loss3 < loss0, $"the LoRA steps did not lower the loss ({loss0} -> {loss3})");
    }

    private sealed class Messages : ITrainingObserver
    {
        public List<string> Lines { get; } = [];
        public void OnMessage(string message) => Lines.Add(message);
    }

    [Fact]
    public void TrainingRunWarnsAboutPureBf16Only()
    {
        var prompts = new[] { new BuPO.Hybrid.Data.PromptItem("p0", "Once upon a time", null), new BuPO.Hybrid.Data.PromptItem("p1", "One day", null) };
        foreach (var (dtype, warns) in new[] { (TrainPrecision.BFloat16Pure, true), (TrainPrecision.BFloat16Mixed, false) })
        {
            var options = new TrainOptions
            {
                Model = TinyTrainingModels.StoriesShaped, Output = Path.Combine(_dir, $"run-{dtype}"), Dtype = dtype,
                Steps = 1, PromptsPerStep = 2, SamplesPerPrompt = 2, MaxResponseTokens = 6, MiniBatchPrompts = 2, Threads = 1, TrainThreads = 1,
                PromptTemplate = "raw", CheckpointEvery = 0, KeepCheckpoints = 0,
            };
            var observer = new Messages();
            var result = TrainingRun.Run(options, TrainingRunTests.MentionsBoy, prompts, observer);
            Assert.Single(result.Steps);
            Assert.Equal(warns, observer.Lines.Contains(TrainPrecisionTypes.PureBf16Warning));
        }
        // The names: fp16 is none of them; bf16-pure is one.
        Assert.Throws<BupoException>(() => TrainConfig.ApplyJson(new TrainOptions { Model = "m.gguf" }, """{"dtype": "fp16"}"""));
        TrainConfig.ApplyJson(new TrainOptions { Model = "m.gguf" }, """{"dtype": "bf16-pure"}""").Validate(needDataset: false);
    }

    /// <summary>3 groups of 3 responses with advantages ±1 and sampler log-probs near uniform.</summary>
    private static TrainingSequence[] Rollouts()
    {
        var rng = new Random(4);
        var vocab = OwnVocabModels.VocabSize;
        return Enumerable.Range(0, 3).SelectMany(g =>
        {
            var prompt = Enumerable.Range(0, 4 + g).Select(_ => rng.Next(3, vocab)).ToArray();
            return Enumerable.Range(0, 3).Select(j =>
            {
                var resp = Enumerable.Range(0, 3 + rng.Next(5)).Select(_ => rng.Next(3, vocab)).ToArray();
                return new TrainingSequence(g, prompt, resp, resp.Select(_ => (float)-Math.Log(vocab)).ToArray(), j == 0 ? 1.0 : j == 1 ? -1.0 : 0.5);
            }).ToArray();
        }).ToArray();
    }

    [Theory]
    [InlineData(true, true)] // IPA on block 1, shared prefix, gradient checkpointing
    [InlineData(false, false)] // GRPO on the full policy, one sequence per response
    public void TrainerUpdatesFloat32MastersUnderMixedPrecisionWithKlReference(bool ipa, bool sharedPrefixAndCheckpointing)
    {
        using var model = TransformerModel.FromGguf(ModelPath, CPU, TrainPrecision.BFloat16Mixed);
        using var reference = TransformerModel.FromGguf(ModelPath, CPU, TrainPrecision.BFloat16Mixed.FrozenEquivalent());
        foreach (var p in reference.TrainableParameters()) p.requires_grad = false;
        var options = new TrainOptions
        {
            Model = ModelPath, Dtype = TrainPrecision.BFloat16Mixed, Lr = 1e-6, MiniBatchPrompts = 3, KlCoef = 0.1, Seed = 2,
            SharedPrefix = sharedPrefixAndCheckpointing, GradientCheckpointing = sharedPrefixAndCheckpointing,
        };
        var before = model.GgufParameters.ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone());
        using var trainer = new GrpoTrainer(model, options.Grpo, reference);
        const int k = 1;
        var stats = trainer.Update(1, Rollouts(), layer: ipa ? k : null, ipa: ipa, lr: 1e-6);
        _out.WriteLine($"ipa {ipa}, shared prefix + checkpointing {sharedPrefixAndCheckpointing}: loss {stats.Loss:E3}, ref KL {stats.RefKl:E3}, grad norm {stats.GradNorm:E3}");
        Assert.Equal(1, stats.OptimizerSteps);
        Assert.True(double.IsFinite(stats.Loss) && double.IsFinite(stats.GradNorm) && stats.GradNorm > 0);
        // One mini-batch: the update is taken before any step, where the policy still computes exactly what the reference does.
        Assert.Equal(0, stats.RefKl);
        foreach (var (name, p) in model.GgufParameters)
        {
            Assert.Equal(ScalarType.Float32, p.dtype);
            var block = name.StartsWith("blk.", StringComparison.Ordinal) ? int.Parse(name.Split('.')[1]) : -1;
            var trained = !ipa || name is "token_embd.weight" or "output.weight" || (block >= 0 && block <= k);
            if (trained) Assert.False(GrpoTrainerTests.Same(p, before[name]), $"{name}: the float32 master did not move at lr 1e-6");
            else Assert.True(GrpoTrainerTests.Same(p, before[name]), $"{name} must not change during an IPA step");
        }
        foreach (var t in before.Values) t.Dispose();
    }
}
