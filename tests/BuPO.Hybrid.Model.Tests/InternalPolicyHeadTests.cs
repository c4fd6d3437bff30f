using TorchSharp;
using static TorchSharp.torch;

namespace BuPO.Hybrid.Model.Tests;

public class InternalPolicyHeadTests
{
    private readonly ITestOutputHelper _out;
    public InternalPolicyHeadTests(ITestOutputHelper output) => _out = output;

    /// <summary>Unchunked reference: materialize all logits and use log_softmax.</summary>
    private static (Tensor LogProbs, Tensor Entropy) Reference(TransformerModel model, Tensor hidden, Tensor targets, LensNorm norm, double temperature)
    {
        var x = norm == LensNorm.Final ? TransformerModel.RmsNorm(hidden, model.OutputNorm, model.Config.RmsEps) : hidden;
        var bias = norm == LensNorm.Final ? model.OutputBias : null;
        using var invT = (1.0 / temperature).ToScalar();
        var z = nn.functional.linear(x, model.Unembedding, bias).mul(invT);
        var logp = z.log_softmax(-1);
        return (logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1), -(logp.exp() * logp).sum(-1));
    }

    [Theory]
    [InlineData(LensNorm.Identity, 1.0, 1024)]
    [InlineData(LensNorm.Identity, 0.7, 5)]
    [InlineData(LensNorm.Final, 1.0, 1)]
    [InlineData(LensNorm.Final, 1.3, 16)]
    public void ChunkedValuesAndGradientsMatchTheUnchunkedReference(LensNorm norm, double temperature, int chunk)
    {
        using var model = TestModels.StoriesShaped(ScalarType.Float64);
        using var scope = NewDisposeScope();
        var seqs = TestModels.Sequences(model.Config.VocabSize, 11, 12, 7, 9);
        using var batch = TokenBatch.Create(seqs);
        using var r = model.Forward(batch, new ForwardOptions { StopAfterBlock = 2 });
        var hidden = r.LastHidden.detach().requires_grad_(true);
        var targets = batch.Tokens.roll(-1, 1);
        var head = new InternalPolicyHead(model, norm, temperature, chunk);

        var lp = head.LogProbs(hidden, targets);
        var ent = head.Entropy(hidden);
        var (refLp, refEnt) = Reference(model, hidden, targets, norm, temperature);
        Assert.Equal(refLp.shape, lp.shape);
        var dLp = TestModels.MaxAbsDiff(lp, refLp);
        var dEnt = TestModels.MaxAbsDiff(ent, refEnt);

        // Gradients with respect to the hidden state and the unembedding, through a random weighting.
        var w1 = randn_like(lp); var w2 = randn_like(ent);
        var gChunked = autograd.grad([(lp * w1).sum().add((ent * w2).sum(), ScalarConstants.One)], [hidden, model.Unembedding]);
        var gRef = autograd.grad([(refLp * w1).sum().add((refEnt * w2).sum(), ScalarConstants.One)], [hidden, model.Unembedding]);
        var dGh = TestModels.MaxAbsDiff(gChunked[0], gRef[0]);
        var dGu = TestModels.MaxAbsDiff(gChunked[1], gRef[1]);
        _out.WriteLine($"{norm} T={temperature} chunk={chunk}: |Δlogp| {dLp:E1} |Δentropy| {dEnt:E1} |Δgrad h| {dGh:E1} |Δgrad U| {dGu:E1}; mean entropy {ent.mean().item<double>():F3} nats (ln V = {Math.Log(model.Config.VocabSize):F3})");
        Assert.True(dLp < 1e-10 && dEnt < 1e-10, $"values differ: {dLp} {dEnt}");
        Assert.True(dGh < 1e-10 && dGu < 1e-10, $"gradients differ: {dGh} {dGu}");
    }

    [Fact]
    public void FullPolicyHeadOnTheLastResidualGivesTheModelsLogProbs()
    {
        using var model = TestModels.StoriesShaped();
        using var scope = NewDisposeScope();
        using var batch = TokenBatch.Create(TestModels.Sequences(model.Config.VocabSize, 5, 10, 4));
        using var r = model.Forward(batch);
        var targets = batch.Tokens.roll(-1, 1);
        var viaHead = InternalPolicyHead.FullPolicy(model, chunkSize: 3).LogProbs(r.LastHidden, targets);
        var direct = r.Logits!.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1);
        Assert.True(TestModels.MaxAbsDiff(viaHead, direct) < 1e-5);
    }

    [Fact]
    public void Float32ChunkedEntropyMatchesReference()
    {
        using var model = TestModels.StoriesShaped();
        using var scope = NewDisposeScope();
        using var batch = TokenBatch.Create(TestModels.Sequences(model.Config.VocabSize, 6, 33, 20));
        using var r = model.Forward(batch, new ForwardOptions { Residuals = ForwardOptions.AllBlocks(model.Config.LayerCount) });
        foreach (var norm in new[] { LensNorm.Identity, LensNorm.Final })
            foreach (var (k, h) in r.Residuals)
            {
                var ent = new InternalPolicyHead(model, norm, chunkSize: 7).Entropy(h);
                var (_, refEnt) = Reference(model, h, batch.Tokens, norm, 1.0);
                Assert.True(TestModels.MaxAbsDiff(ent, refEnt) < 1e-5);
            }
    }
}
