using BuPO.Hybrid.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace BuPO.Hybrid.Model.Tests;

/// <summary>Runs alone: the tests below take backward passes, and two TorchSharp backward loops on threads can crash.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class MixedPrecisionCollection
{
    public const string Name = "mixed precision";
}

/// <summary>
/// Mixed precision (<see cref="TrainPrecision.BFloat16Mixed"/>) on random models with a vocabulary of their own (no
/// ../shared): float32 masters, bf16 activations, float32 log-probs close to a float32 model's, gradients that reach the
/// masters in float32 on the per-sequence, shared-prefix, layer-k and checkpointed paths, and a frozen pure-bf16 copy
/// that computes exactly what the mixed model computes (the KL reference).
/// </summary>
[Collection(MixedPrecisionCollection.Name)]
public sealed class MixedPrecisionTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("bupo-mixed-").FullName;
    private readonly ITestOutputHelper _out;

    public MixedPrecisionTests(ITestOutputHelper output)
    {
        _out = output;
        _ = TestModels.MaxAbsDiff(zeros(1), zeros(1)); // torch set-up (TestModels' static init)
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    private TransformerModel Load(string shape, TrainPrecision precision) => TransformerModel.FromGguf(OwnVocabModels.Write(_dir, shape), CPU, precision);

    private static TokenBatch Batch() => TokenBatch.Create(TestModels.Sequences(OwnVocabModels.VocabSize, 3, 9, 5, 12));

    /// <summary>log π(next token) of every position of <paramref name="batch"/> under the full policy or block k's internal policy.</summary>
    private static Tensor LogProbs(TransformerModel model, TokenBatch batch, int? layer, bool checkpointing = false)
    {
        var fwd = model.Forward(batch, new ForwardOptions { ComputeLogits = false, StopAfterBlock = layer, GradientCheckpointing = checkpointing });
        var head = layer is null ? InternalPolicyHead.FullPolicy(model) : new InternalPolicyHead(model, LensNorm.Identity);
        var t = batch.Tokens.shape[1];
        var hidden = fwd.LastHidden.narrow(1, 0, t - 1);
        return head.LogProbs(hidden, batch.Tokens.narrow(1, 1, t - 1));
    }

    [Theory]
    [InlineData("llama-tiny")]
    [InlineData("qwen2-tiny")]
    [InlineData("qwen3-tiny")]
    public void MixedLogProbsAreFloat32AndCloseToFloat32Model(string shape)
    {
        using var f32 = Load(shape, TrainPrecision.Float32);
        using var mixed = Load(shape, TrainPrecision.BFloat16Mixed);
        Assert.All(mixed.TrainableParameters(), p => Assert.Equal(ScalarType.Float32, p.dtype));
        Assert.Equal(ScalarType.BFloat16, mixed.ComputeType);
        using var batch = Batch();
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var fwd = mixed.Forward(batch, new ForwardOptions { ComputeLogits = true });
        Assert.Equal(ScalarType.BFloat16, fwd.LastHidden.dtype); // the blocks really ran in bf16
        foreach (var layer in new int?[] { null, 0 })
        {
            var reference = LogProbs(f32, batch, layer);
            var lp = LogProbs(mixed, batch, layer);
            Assert.Equal(ScalarType.Float32, lp.dtype);
            var mask = batch.Mask.narrow(1, 1, batch.Mask.shape[1] - 1);
            var diff = TestModels.MaxAbsDiff(lp.masked_select(mask), reference.masked_select(mask));
            _out.WriteLine($"{shape} {(layer is null ? "full policy" : $"block {layer} policy")}: max |Δ log p| mixed vs float32 {diff:E2} (log p around {reference.masked_select(mask).mean().item<float>():F2})");
            // bf16 keeps 8 mantissa bits (relative rounding 2^-9 ≈ 2e-3 per operation): block 0's policy moves by ~1e-3 nats,
            // the full policy (bf16 final logits of magnitude ~10) by ~3e-2 (measured). 0.1 nats allows that and still fails
            // a wrong weight, a missed RoPE or norm, or a bf16 log-softmax on these peaked policies.
            Assert.True(diff < 0.1, $"mixed log-probs differ from float32 ones by {diff}");
            Assert.True(diff > 0, "mixed log-probs equal float32 ones bit for bit: the forward did not compute in bf16");
        }
    }

    [Fact]
    public void MixedGradientsReachFloat32MastersOnEveryPath()
    {
        using var f32 = Load("qwen2-tiny", TrainPrecision.Float32); // qwen2: biases and tied embeddings
        using var mixed = Load("qwen2-tiny", TrainPrecision.BFloat16Mixed);
        using var batch = Batch();
        Dictionary<string, Tensor> Grads(TransformerModel m, int? layer, bool checkpointing)
        {
            m.zero_grad(set_to_none: true);
            using (var scope = NewDisposeScope())
                (-LogProbs(m, batch, layer, checkpointing).masked_select(batch.Mask.narrow(1, 1, batch.Mask.shape[1] - 1)).sum()).backward();
            var grads = m.GgufParameters.Where(kv => kv.Value.grad is not null).ToDictionary(kv => kv.Key, kv => kv.Value.grad!.detach().clone());
            m.zero_grad(set_to_none: true);
            return grads;
        }
        foreach (var layer in new int?[] { null, 0 })
        {
            double worst = 0;
            var expected = Grads(f32, layer, false);
            var plain = Grads(mixed, layer, false);
            var recomputed = Grads(mixed, layer, true);
            Assert.Equal(expected.Keys.Order(), plain.Keys.Order());
            Assert.Equal(expected.Keys.Order(), recomputed.Keys.Order());
            foreach (var (name, g) in plain)
            {
                Assert.Equal(ScalarType.Float32, g.dtype);
                var scale = expected[name].abs().max().item<float>();
                var rel = TestModels.MaxAbsDiff(g, expected[name]) / Math.Max(scale, 1e-12);
                worst = Math.Max(worst, rel);
                // Relative to the largest element: bf16 activations perturb each gradient by ~1e-2 of its size.
                Assert.True(rel < 0.1, $"{name} (layer {layer?.ToString() ?? "full"}): mixed gradient differs from float32 by {rel:E2} of its scale");
                // Checkpointing recomputes the same bf16 block in backward: the same gradient.
                var recomputeDiff = TestModels.MaxAbsDiff(recomputed[name], g) / Math.Max(scale, 1e-12);
                Assert.True(recomputeDiff < 1e-5, $"{name}: checkpointed mixed gradient differs by {recomputeDiff:E2}");
            }
            _out.WriteLine($"layer {layer?.ToString() ?? "full"}: {plain.Count} float32 master gradients, worst max |Δ| / max |g| vs the float32 model {worst:E2}");
            foreach (var t in expected.Values.Concat(plain.Values).Concat(recomputed.Values)) t.Dispose();
        }
    }

    [Fact]
    public void SharedPrefixUnderMixedPrecisionMatchesOneSequencePerResponse()
    {
        using var mixed = Load("qwen3-tiny", TrainPrecision.BFloat16Mixed);
        var seqs = TestModels.Sequences(OwnVocabModels.VocabSize, 5, 6, 3, 4);
        int[] prompt = seqs[0], r1 = seqs[1], r2 = seqs[2];
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        using var grouped = new PrefixGroupBatch([new PrefixGroup(prompt, [r1, r2])]);
        var shared = mixed.Forward(grouped, new ForwardOptions { ComputeLogits = false });
        Assert.Equal(ScalarType.BFloat16, shared.LastHidden.dtype);
        var head = InternalPolicyHead.FullPolicy(mixed);
        foreach (var (resp, j) in new[] { (r1, 0), (r2, 1) })
        {
            using var alone = TokenBatch.Create([prompt.Concat(resp).ToArray()]);
            var fwd = mixed.Forward(alone, new ForwardOptions { ComputeLogits = false });
            // The row that predicts response token t + 1 (t = 0: the prompt's last row).
            var rows = Enumerable.Range(0, resp.Length - 1).Select(t => (long)grouped.PredictorIndex(0, j, t + 1)).ToArray();
            var sharedLp = head.LogProbs(shared.LastHidden.select(0, 0).index_select(0, tensor(rows)), tensor(resp.Skip(1).Select(x => (long)x).ToArray()));
            var aloneLp = head.LogProbs(fwd.LastHidden.select(0, 0).narrow(0, prompt.Length, resp.Length - 1), tensor(resp.Skip(1).Select(x => (long)x).ToArray()));
            var diff = TestModels.MaxAbsDiff(sharedLp, aloneLp);
            _out.WriteLine($"response {j}: shared-prefix vs alone under mixed precision, max |Δ log p| {diff:E2}");
            // Both run the same bf16 ops on the same rows; only the attention's reduction order may differ.
            Assert.True(diff < 0.02, $"shared-prefix log-probs differ by {diff}");
        }
    }

    [Fact]
    public void FrozenPureBf16CopyComputesWhatTheMixedModelComputes()
    {
        using var mixed = Load("llama-tiny", TrainPrecision.BFloat16Mixed);
        using var frozen = Load("llama-tiny", TrainPrecision.BFloat16Mixed.FrozenEquivalent());
        Assert.All(frozen.TrainableParameters(), p => Assert.Equal(ScalarType.BFloat16, p.dtype));
        using var batch = Batch();
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        foreach (var layer in new int?[] { null, 1 })
            Assert.True(LogProbs(mixed, batch, layer).eq(LogProbs(frozen, batch, layer)).all().item<bool>(),
                $"the pure-bf16 reference's log-probs ({(layer is null ? "full" : $"block {layer}")}) are not bit-identical to the mixed model's");
    }

    [Fact]
    public void PrecisionStringsParse()
    {
        Assert.Equal(TrainPrecision.Float32, ModelDevice.ParsePrecision("float32"));
        Assert.Equal(TrainPrecision.Float32, ModelDevice.ParsePrecision("FP32"));
        Assert.Equal(TrainPrecision.Float32, ModelDevice.ParsePrecision(null));
        Assert.Equal(TrainPrecision.BFloat16Mixed, ModelDevice.ParsePrecision("bf16"));
        Assert.Equal(TrainPrecision.BFloat16Mixed, ModelDevice.ParsePrecision("bfloat16"));
        Assert.Equal(TrainPrecision.BFloat16Pure, ModelDevice.ParsePrecision("bf16-pure"));
        var e = Assert.Throws<BupoException>(() => ModelDevice.ParsePrecision("fp16"));
        Assert.Contains("bf16-pure", e.Message);
        Assert.Equal((ScalarType.Float32, ScalarType.BFloat16), (TrainPrecision.BFloat16Mixed.ParameterType(), TrainPrecision.BFloat16Mixed.ComputeType()));
        Assert.Equal((ScalarType.BFloat16, ScalarType.BFloat16), (TrainPrecision.BFloat16Pure.ParameterType(), TrainPrecision.BFloat16Pure.ComputeType()));
    }
}
