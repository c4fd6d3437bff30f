using BuPO.Hybrid.Model;
using BuPO.Hybrid.Tests.Support;
using BuPO.Hybrid.Tokenizers;
using TorchSharp;
using static TorchSharp.torch;
using BuPO.Hybrid.Rollout;
using BuPO.Hybrid.RL.Evaluation;

namespace BuPO.Hybrid.RL.Tests;

/// <summary><c>eval --policy-layer k</c>'s sampler: block k's internal policy, sampled in torch (no ../shared needed).</summary>
public sealed class TorchPolicySamplerTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("bupo-layer-sampler-").FullName;

    public TorchPolicySamplerTests()
    {
        TorchRuntime.EnsureInitialized();
        torch.set_num_threads(1);
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    /// <summary>"t{id}" pieces; id 2 ends generation.</summary>
    private sealed class PieceTokenizer : ITextTokenizer
    {
        public int VocabSize => OwnVocabModels.VocabSize;
        public int BosId => -1;
        public int EosId => 2;
        public bool AddsBos => false;
        public bool IsEndOfGeneration(int id) => id == 2;
        public int[] Encode(string text, bool addSpecial = true, bool parseSpecial = false) => throw new NotSupportedException();
        public string Decode(ReadOnlySpan<int> ids, bool removeSpecial = false, bool unparseSpecial = false) => string.Join(' ', ids.ToArray().Select(TokenToPiece));
        public string TokenToPiece(int id) => $"t{id}";
    }

    [Theory]
    [InlineData("qwen3-tiny", 0)]
    [InlineData("llama-tiny", 1)]
    public void LayerLogProbsEqualAFloat64SoftmaxOfTheRawHiddenStateTimesTheUnembedding(string shape, int k)
    {
        using var model = TransformerModel.FromGguf(OwnVocabModels.Write(_dir, shape), CPU, ScalarType.Float64);
        var tokens = new[] { 5, 17, 3, 40, 9, 60, 11 };
        var sampler = new TorchPolicySampler(model, new PieceTokenizer(), k);
        var got = sampler.LogProbs(tokens, temperature: 0.7);
        // Independently: a plain padded forward keeping block k's residual, then h_k E_u^T / T in float64, no final norm.
        using var scope = NewDisposeScope();
        using var batch = TokenBatch.Create([tokens]);
        using var fwd = model.Forward(batch, new ForwardOptions { Residuals = ForwardOptions.Blocks(k), ComputeLogits = false });
        var h = fwd.Residuals[k].squeeze(0).to_type(ScalarType.Float64);
        using var invT = (1.0 / 0.7).ToScalar();
        var logits = h.matmul(model.Unembedding.detach().to_type(ScalarType.Float64).t()).mul(invT);
        var lsm = logits.log_softmax(-1);
        Assert.Equal(tokens.Length - 1, got.Length);
        for (var t = 0; t < tokens.Length - 1; t++)
            Assert.Equal(lsm[t, tokens[t + 1]].item<double>(), got[t], 9);
        // The final policy (with the final norm) is a different distribution: the layer sampler is not it.
        var full = new TorchPolicySampler(model, new PieceTokenizer(), null).LogProbs(tokens, 0.7);
        Assert.True(got.Zip(full).Max(x => Math.Abs(x.First - x.Second)) > 1e-3);
    }

    [Fact]
    public void GreedySamplingFollowsTheArgmaxAndSeededSamplingIsReproducible()
    {
        using var model = TransformerModel.FromGguf(OwnVocabModels.Write(_dir, "qwen2-tiny"), CPU, ScalarType.Float32);
        var sampler = new TorchPolicySampler(model, new PieceTokenizer(), 0) { PromptsPerBatch = 1 };
        var prompts = new[] { new[] { 4, 8, 15 }, new[] { 16, 23 } };
        var greedy = sampler.Generate(new RolloutRequest(prompts, 2, new RolloutSampling { Temperature = 0, MaxTokens = 5 }, 1));
        Assert.Equal(4, greedy.Count);
        foreach (var r in greedy)
        {
            // Each greedy token is the argmax of block 0's internal policy given everything before it.
            var seq = r.PromptTokens.ToList();
            foreach (var tok in r.ResponseTokens)
            {
                using var scope = NewDisposeScope();
                using var batch = TokenBatch.Create([seq.ToArray()]);
                using var fwd = model.Forward(batch, new ForwardOptions { Residuals = ForwardOptions.Blocks(0), ComputeLogits = false });
                var last = fwd.Residuals[0].squeeze(0)[seq.Count - 1];
                var argmax = (int)last.matmul(model.Unembedding.detach().t()).argmax().item<long>();
                Assert.Equal(argmax, tok);
                seq.Add(tok);
            }
            Assert.True(r.ResponseTokens.Length == 5 || r.ResponseTokens[^1] == 2);
        }
        Assert.Equal(greedy[0].ResponseTokens, greedy[1].ResponseTokens);
        var s1 = sampler.Generate(new RolloutRequest(prompts, 3, new RolloutSampling { Temperature = 1, MaxTokens = 6 }, 42));
        var s2 = sampler.Generate(new RolloutRequest(prompts, 3, new RolloutSampling { Temperature = 1, MaxTokens = 6 }, 42));
        Assert.Equal(s1.Select(r => string.Join(',', r.ResponseTokens)), s2.Select(r => string.Join(',', r.ResponseTokens)));
        // The sampling log-prob of each token is the layer policy's.
        var first = s1[0];
        var lps = sampler.LogProbs([.. first.PromptTokens, .. first.ResponseTokens]);
        for (var t = 0; t < first.ResponseTokens.Length; t++) Assert.Equal(lps[first.PromptTokens.Length - 1 + t], first.RawLogProbs[t], 4);
        Assert.Throws<BupoException>(() => new TorchPolicySampler(model, new PieceTokenizer(), model.Config.LayerCount));
    }
}
