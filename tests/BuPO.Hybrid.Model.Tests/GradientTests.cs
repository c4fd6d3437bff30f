using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace BuPO.Hybrid.Model.Tests;

public class GradientTests
{
    private readonly ITestOutputHelper _out;
    public GradientTests(ITestOutputHelper output) => _out = output;

    private const int K = 1; // the internal-policy block

    /// <summary>Sum of layer-K log-probs of the next tokens (BuPO's IPA objective up to advantages), float64.</summary>
    private static Tensor LayerLoss(TransformerModel model, TokenBatch batch, bool stopEarly, bool checkpoint = false)
    {
        using var r = model.Forward(batch, new ForwardOptions
        {
            StopAfterBlock = stopEarly ? K : null, Residuals = ForwardOptions.Blocks(K), ComputeLogits = !stopEarly,
            GradientCheckpointing = checkpoint,
        });
        var targets = batch.Tokens.roll(-1, 1);
        var lp = new InternalPolicyHead(model, chunkSize: 4).LogProbs(r.Residuals[K], targets);
        return (lp * batch.Mask.to_type(lp.dtype)).sum();
    }

    private static void ClearGrads(TransformerModel model)
    {
        foreach (var p in model.parameters()) p.grad = null;
    }

    [Fact]
    public void AutogradMatchesFiniteDifferencesForTheLayerLogProb()
    {
        using var model = TestModels.StoriesShaped(ScalarType.Float64);
        using var scope = NewDisposeScope();
        using var batch = TokenBatch.Create(TestModels.Sequences(model.Config.VocabSize, 21, 6, 4), side: PaddingSide.Left);
        ClearGrads(model);
        LayerLoss(model, batch, stopEarly: true).backward();

        var probes = new (string Name, Parameter P)[]
        {
            ("token_embd.weight", model.TokenEmbedding),
            ("blk.0.attn_q.weight", model.Blocks[0].Wq!),
            ("blk.0.attn_k.weight", model.Blocks[0].Wk!),
            ("blk.1.attn_v.weight", model.Blocks[1].Wv!),
            ("blk.1.attn_output.weight", model.Blocks[1].Wo),
            ("blk.1.ffn_norm.weight", model.Blocks[1].FfnNorm),
            ("blk.1.ffn_down.weight", model.Blocks[1].Down),
            ("output.weight (E_u)", model.Unembedding),
        };
        var rng = new Random(5);
        const double eps = 1e-6;
        double worst = 0;
        foreach (var (name, p) in probes)
        {
            var grad = p.grad ?? throw new Xunit.Sdk.XunitException($"{name} got no gradient");
            var flatGrad = grad.flatten();
            // The entries with the largest gradients, plus random ones: a check that cannot pass on zeros alone.
            var top = flatGrad.abs().argsort(descending: true).narrow(0, 0, 3).data<long>().ToArray();
            var picks = top.Concat(Enumerable.Range(0, 3).Select(_ => (long)rng.Next((int)p.numel()))).ToArray();
            foreach (var idx in picks)
            {
                double Eval(double delta)
                {
                    using var s = NewDisposeScope();
                    using (no_grad())
                    {
                        var flat = p.view(-1);
                        var old = flat[idx].item<double>();
                        flat[idx] = tensor(old + delta, ScalarType.Float64);
                        var v = LayerLoss(model, batch, stopEarly: true).item<double>();
                        flat[idx] = tensor(old, ScalarType.Float64);
                        return v;
                    }
                }
                var fd = (Eval(eps) - Eval(-eps)) / (2 * eps);
                var ad = flatGrad[idx].item<double>();
                // Relative error with a 1e-2 floor: central differences in float64 carry ~1e-8 of round-off.
                var err = Math.Abs(fd - ad) / (Math.Abs(ad) + 1e-2);
                worst = Math.Max(worst, err);
                Assert.True(err < 1e-5, $"{name}[{idx}]: autograd {ad:E6} vs finite difference {fd:E6}");
            }
        }
        _out.WriteLine($"worst error |fd - ad| / (|ad| + 1e-2) over {probes.Length * 6} entries: {worst:E2}");
    }

    [Theory]
    [InlineData(true, false)]
    [InlineData(false, false)]
    [InlineData(true, true)]
    public void GradientsReachOnlyTheLowerBlocksEmbeddingAndUnembedding(bool stopEarly, bool checkpoint)
    {
        using var model = TestModels.StoriesShaped(ScalarType.Float64);
        using var scope = NewDisposeScope();
        using var batch = TokenBatch.Create(TestModels.Sequences(model.Config.VocabSize, 22, 5, 8));
        ClearGrads(model);
        LayerLoss(model, batch, stopEarly, checkpoint).backward();
        static bool HasGrad(Parameter p) => p.grad is { } g && g.abs().max().item<double>() > 0;
        Assert.True(HasGrad(model.TokenEmbedding));
        Assert.True(HasGrad(model.Unembedding));
        for (var k = 0; k < model.Config.LayerCount; k++)
            foreach (var p in model.Blocks[k].Parameters())
                Assert.Equal(k <= K, HasGrad(p));
        Assert.False(HasGrad(model.OutputNorm));
        var reached = model.parameters().Count(HasGrad);
        Assert.Equal(model.ParametersUpToBlock(K).Count(), reached);
        _out.WriteLine($"stopEarly={stopEarly} checkpoint={checkpoint}: {reached} of {model.parameters().Count()} parameters have gradients");
    }

    [Fact]
    public void CheckpointedBlocksGiveTheSameGradients()
    {
        using var model = TestModels.StoriesShaped(ScalarType.Float64);
        using var scope = NewDisposeScope();
        using var batch = TokenBatch.Create(TestModels.Sequences(model.Config.VocabSize, 23, 7, 3), side: PaddingSide.Left);
        Dictionary<string, Tensor> Grads(bool checkpoint)
        {
            ClearGrads(model);
            using var r = model.Forward(batch, new ForwardOptions { GradientCheckpointing = checkpoint, ComputeLogits = false });
            var lp = InternalPolicyHead.FullPolicy(model).LogProbs(r.LastHidden, batch.Tokens.roll(-1, 1));
            (lp * batch.Mask.to_type(lp.dtype)).sum().backward();
            return model.GgufParameters.ToDictionary(kv => kv.Key, kv => kv.Value.grad!.clone());
        }
        var plain = Grads(false);
        var ckpt = Grads(true);
        double worst = 0;
        foreach (var (name, g) in plain)
            worst = Math.Max(worst, TestModels.MaxAbsDiff(g, ckpt[name]));
        _out.WriteLine($"max |Δgrad| checkpointed vs plain: {worst:E2}");
        Assert.True(worst < 1e-10);
    }
}
