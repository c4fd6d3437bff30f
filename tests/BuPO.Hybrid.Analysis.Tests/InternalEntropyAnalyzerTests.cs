using BuPO.Hybrid.Gguf;
using BuPO.Hybrid.Llama;
using BuPO.Hybrid.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace BuPO.Hybrid.Analysis.Tests;

[Collection("analyzer")]
public class InternalEntropyAnalyzerTests(AnalyzerModels models, ITestOutputHelper log)
{
    private static AnalyzeOptions Options(string path, AnalysisEngine engine, LensNorm norm = LensNorm.Identity) => new()
    {
        ModelPath = path, Engine = engine, Norm = norm, Threads = 1, ChunkSize = 64,
        // Float32 attention in llama.cpp (F16 caches round Q/K/V and the attention weights: ~1e-2 on logits).
        KvCacheType = engine == AnalysisEngine.Llama ? GgmlType.F32 : null,
    };

    /// <summary>Largest difference between two results over every per-block value and the final/embedding entropies.</summary>
    private static double MaxDiff(AnalysisResult a, AnalysisResult b)
    {
        Assert.Equal(a.Layers.Count, b.Layers.Count);
        double worst = Math.Max(Math.Abs(a.FinalEntropy - b.FinalEntropy), Math.Abs(a.EmbeddingEntropy - b.EmbeddingEntropy));
        for (var i = 0; i < a.Layers.Count; i++)
        {
            var (x, y) = (a.Layers[i], b.Layers[i]);
            Assert.Equal(x.Index, y.Index);
            foreach (var (u, v) in new[]
                     {
                         (x.Entropy, y.Entropy), (x.EntropyStd, y.EntropyStd), (x.AttentionEntropyStd, y.AttentionEntropyStd), (x.FfnEntropyStd, y.FfnEntropyStd), (x.AttentionEntropy, y.AttentionEntropy), (x.FfnEntropy, y.FfnEntropy),
                         (x.AttentionInputEntropy, y.AttentionInputEntropy), (x.FfnInputEntropy, y.FfnInputEntropy),
                         (x.DeltaLayer, y.DeltaLayer), (x.DeltaAttention, y.DeltaAttention), (x.DeltaFfn, y.DeltaFfn),
                     })
            {
                Assert.True(double.IsFinite(u) && double.IsFinite(v));
                worst = Math.Max(worst, Math.Abs(u - v));
            }
        }
        return worst;
    }

    [Theory]
    [InlineData("stories")]
    [InlineData("llama")]
    public void TheDefaultLlamaEngineMatchesAFloat64ForwardWithin1e5(string name)
    {
        // As found on stories260K: the default F16 KV cache put per-block entropies up to 1.3e-3 nats off a float64 forward, ΔH up to 2.0e-3.
        var path = models.Path(name);
        var defaults = new AnalyzeOptions { ModelPath = path, Threads = 1 };
        Assert.Equal(AnalysisEngine.Llama, defaults.Engine);
        var llama = InternalEntropyAnalyzer.Run(defaults, AnalyzerModels.Prompts);
        using var model64 = TransformerModel.FromGguf(path, CPU, ScalarType.Float64);
        var exact = InternalEntropyAnalyzer.Run(new AnalyzeOptions { Model = model64, Engine = AnalysisEngine.Torch, Threads = 1 }, AnalyzerModels.Prompts);
        var diff = MaxDiff(llama, exact);
        // The rollouts' F16 cache, for comparison (it is what --kv-type default gives).
        var f16 = MaxDiff(InternalEntropyAnalyzer.Run(defaults with { KvCacheType = null }, AnalyzerModels.Prompts), exact);
        log.WriteLine($"{name}, {llama.PositionCount} positions: default settings max |Δ| vs float64 = {diff:E2} nats; F16 cache {f16:E2}");
        Assert.True(diff <= 1e-5, $"max |Δ| {diff}");
    }

    [Theory]
    [InlineData("stories")]
    [InlineData("llama")]
    [InlineData("qwen2")]
    [InlineData("qwen3")]
    [InlineData("qwen3-qwen2vocab")]
    public void LlamaAndTorchEnginesAgree(string name)
    {
        var path = models.Path(name);
        foreach (var norm in new[] { LensNorm.Identity, LensNorm.Final })
        {
            var llama = InternalEntropyAnalyzer.Run(Options(path, AnalysisEngine.Llama, norm), AnalyzerModels.Prompts);
            var torchResult = InternalEntropyAnalyzer.Run(Options(path, AnalysisEngine.Torch, norm), AnalyzerModels.Prompts);
            Assert.Equal(llama.TokenIds, torchResult.TokenIds);
            Assert.Equal(llama.NLayer, llama.Layers.Count);
            Assert.Equal(AnalyzerModels.Prompts.Length, llama.TokenIds.Count);
            Assert.Equal(llama.TokenIds.Sum(t => t.Length), llama.PositionCount);
            var diff = MaxDiff(llama, torchResult);
            log.WriteLine($"{name} ({llama.Architecture}, norm {llama.Norm}): {llama.PositionCount} positions, max |Δ| llama vs torch over every " +
                          $"block, module and ΔH = {diff:E2} nats; final entropy {llama.FinalEntropy:F4}, boundary {llama.BoundaryLayer}");
            Assert.True(diff <= 1e-4, $"{name} norm {norm}: max |Δ| {diff}");
        }
    }

    /// <summary>
    /// Every entropy and ΔH of a result against values computed here from llama.cpp's graph nodes with a plain softmax over
    /// logits h · E_uᵀ (E_u read from the GGUF), and the final entropy against llama.cpp's own logits.
    /// </summary>
    [Theory]
    [InlineData("stories")]
    [InlineData("llama")]
    [InlineData("qwen2")]
    [InlineData("qwen3")]
    public void DeltasEqualIndependentEntropyDifferences(string name)
    {
        var path = models.Path(name);
        var config = TransformerConfig.FromGguf(path);
        int L = config.LayerCount, d = config.EmbeddingLength;
        using var scope = NewDisposeScope();
        Tensor u; // E_u [vocab, d]
        using (var file = GgufFile.Open(path))
        {
            var info = file.FindTensor("output.weight") ?? file.GetTensor("token_embd.weight");
            u = torch.tensor(file.ReadTensorFloat(info), [info.Shape[1], info.Shape[0]]);
        }
        // Σ over rows of H = log Σ e^(z - max) - Σ e^(z - max) (z - max) / Σ e^(z - max), z = h · E_uᵀ (then in float64).
        double SumEntropy(float[] rows, int n)
        {
            using var s = NewDisposeScope();
            var z = torch.tensor(rows, [n, d]).matmul(u.t()).to_type(ScalarType.Float64);
            var c = z - z.max(1, keepdim: true).values;
            var e = c.exp();
            var sum = e.sum(1);
            return (sum.log() - (e * c).sum(1) / sum).sum().item<double>();
        }

        // Sums over all positions of all sequences, per site: [k+1] with [0] = embd.
        var layer = new double[L + 1]; var attn = new double[L]; var ffn = new double[L]; var x = new double[L]; var y = new double[L];
        double final = 0; long n = 0;
        var ids = InternalEntropyAnalyzer.Run(Options(path, AnalysisEngine.Torch) with { Layers = [0] }, AnalyzerModels.Prompts).TokenIds;
        using (var llm = LlamaModel.Load(path))
        {
            foreach (var tokens in ids)
            {
                var names = new List<string> { "embd" };
                for (var k = 0; k < L; k++) names.AddRange([$"l_out-{k}", $"attn_norm-{k}", $"ffn_norm-{k}", $"ffn_out-{k}", $"ffn_inp-{k}"]);
                var probe = new TensorProbe(names);
                using var ctx = LlamaContext.Create(llm, new LlamaContextOptions
                {
                    ContextSize = 64, BatchSize = 64, UBatchSize = 64, Threads = 1, Probe = probe, FlashAttention = false, KvCacheType = GgmlType.F32,
                });
                using var batch = new LlamaBatch(tokens.Length);
                for (var i = 0; i < tokens.Length; i++) batch.Add(tokens[i], i, 0, wantLogits: true);
                ctx.Decode(batch);
                var t = tokens.Length;
                float[] Node(string name)
                {
                    var c = probe.Get(name);
                    Assert.Equal((t, d), (c.Rows, c.Cols));
                    return c.Data;
                }
                layer[0] += SumEntropy(Node("embd"), t);
                for (var k = 0; k < L; k++)
                {
                    layer[k + 1] += SumEntropy(Node($"l_out-{k}"), t);
                    x[k] += SumEntropy(Node($"attn_norm-{k}"), t);
                    y[k] += SumEntropy(Node($"ffn_norm-{k}"), t);
                    ffn[k] += SumEntropy(Node($"ffn_out-{k}"), t);
                    // A^k = M^k - H^{k-1} (this node difference for every architecture here; the analyzer reads attn_out-k for llama).
                    var a = new float[t * d];
                    System.Numerics.Tensors.TensorPrimitives.Subtract(Node($"ffn_inp-{k}"), Node(k == 0 ? "embd" : $"l_out-{k - 1}"), a);
                    attn[k] += SumEntropy(a, t);
                }
                for (var p = 0; p < t; p++) final += LogitEntropy(ctx.GetLogits(p).ToArray().Select(v => (double)v).ToArray());
                n += t;
            }
        }

        foreach (var engine in new[] { AnalysisEngine.Llama, AnalysisEngine.Torch })
        {
            var result = InternalEntropyAnalyzer.Run(Options(path, engine), AnalyzerModels.Prompts);
            Assert.Equal(ids, result.TokenIds);
            Assert.Equal(n, result.PositionCount);
            double worst = Math.Abs(final / n - result.FinalEntropy);
            worst = Math.Max(worst, Math.Abs(layer[0] / n - result.EmbeddingEntropy));
            for (var k = 0; k < L; k++)
            {
                var r = result.Layers[k];
                double hk = layer[k + 1] / n, hprev = layer[k] / n, a = attn[k] / n, f = ffn[k] / n, xk = x[k] / n, yk = y[k] / n;
                foreach (var (ours, theirs) in new[]
                         {
                             (r.Entropy, hk), (r.AttentionEntropy, a), (r.FfnEntropy, f), (r.AttentionInputEntropy, xk), (r.FfnInputEntropy, yk),
                             (r.DeltaLayer, hk - hprev), (r.DeltaAttention, a - xk), (r.DeltaFfn, f - yk),
                         })
                    worst = Math.Max(worst, Math.Abs(ours - theirs));
                // The records' own arithmetic.
                Assert.Equal(r.AttentionEntropy - r.AttentionInputEntropy, r.DeltaAttention, 12);
                Assert.Equal(r.FfnEntropy - r.FfnInputEntropy, r.DeltaFfn, 12);
                Assert.Equal(r.Entropy - (k == 0 ? result.EmbeddingEntropy : result.Layers[k - 1].Entropy), r.DeltaLayer, 12);
            }
            log.WriteLine($"{name}, engine {result.Engine}: max |Δ| against plain-softmax entropies of llama.cpp nodes (and llama.cpp's logits for the final policy) = {worst:E2} over {n} positions");
            Assert.True(worst <= 1e-4, $"{name} {engine}: {worst}");
        }
    }

    private static double LogitEntropy(double[] z)
    {
        var max = z.Max();
        double sum = 0, dot = 0;
        foreach (var v in z) { var e = Math.Exp(v - max); sum += e; dot += e * (v - max); }
        return Math.Log(sum) - dot / sum;
    }

    [Fact]
    public void LensHeadMatchesInternalPolicyHead()
    {
        var path = models.Path("llama");
        using var model = TransformerModel.FromGguf(path);
        using var head = LensHead.FromModel(model, chunkSize: 7);
        using var fromFile = LensHead.FromGguf(path, chunkSize: 5);
        using var scope = NewDisposeScope();
        torch.manual_seed(5);
        using var three = 3.ToScalar();
        var h = torch.randn(23, model.Config.EmbeddingLength).mul(three);
        foreach (var norm in new[] { LensNorm.Identity, LensNorm.Final })
        {
            using var reference = new InternalPolicyHead(model, norm, chunkSize: 4).Entropy(h);
            var expected = reference.data<float>().ToArray();
            var a = head.Entropy(h, norm);
            var b = fromFile.Entropy(h, norm);
            for (var i = 0; i < expected.Length; i++)
            {
                Assert.True(Math.Abs(expected[i] - a[i]) < 1e-5, $"{norm} row {i}: {expected[i]} vs {a[i]}");
                Assert.True(Math.Abs(expected[i] - b[i]) < 1e-5, $"{norm} row {i}: {expected[i]} vs {b[i]}");
            }
        }
    }

    [Fact]
    public void ResponsePositionsAreThoseThatProducedTheResponse()
    {
        var path = models.Path("llama");
        var gen = Options(path, AnalysisEngine.Llama) with { GenerateTokens = 6, Seed = 7, Positions = AnalysisPositions.Response, PerToken = true };
        var r1 = InternalEntropyAnalyzer.Run(gen, AnalyzerModels.Prompts);
        var r2 = InternalEntropyAnalyzer.Run(gen, AnalyzerModels.Prompts);
        Assert.Equal(r1.TokenIds, r2.TokenIds); // seeded sampling
        Assert.Equal("response", r1.Positions);
        var prompt = InternalEntropyAnalyzer.Run(Options(path, AnalysisEngine.Llama), AnalyzerModels.Prompts);
        for (var i = 0; i < r1.TokenIds.Count; i++)
        {
            Assert.Equal(prompt.TokenIds[i], r1.TokenIds[i][..r1.PromptLengths![i]]);
            Assert.InRange(r1.TokenIds[i].Length - r1.PromptLengths[i], 1, 6);
        }
        Assert.Equal(r1.TokenIds.Select((t, i) => (long)t.Length - r1.PromptLengths![i]).Sum(), r1.PositionCount);

        // The same sequences analyzed at every position: the response rows are positions P-1..T-2.
        var seqs = r1.TokenIds.Select((t, i) => new AnalysisSequence(t, r1.PromptLengths![i])).ToArray();
        var all = InternalEntropyAnalyzer.Analyze(gen with { Positions = AnalysisPositions.All }, seqs);
        var resp = InternalEntropyAnalyzer.Analyze(gen, seqs);
        Assert.Equal(r1.Layers, resp.Layers);
        for (var s = 0; s < seqs.Length; s++)
        {
            var p = seqs[s].PromptLength;
            Assert.Equal(seqs[s].Tokens.Length, all.PerToken![s].Length);
            Assert.Equal(seqs[s].Tokens.Length - p, resp.PerToken![s].Length);
            for (var j = 0; j < resp.PerToken[s].Length; j++) Assert.Equal(all.PerToken[s][p - 1 + j], resp.PerToken[s][j]);
        }
        var promptOnly = InternalEntropyAnalyzer.Analyze(gen with { Positions = AnalysisPositions.Prompt }, seqs);
        Assert.Equal(seqs.Sum(s => (long)s.PromptLength), promptOnly.PositionCount);
    }

    [Fact]
    public void LayerSubsetGivesTheSameValuesAsTheFullRun()
    {
        var path = models.Path("qwen3");
        var full = InternalEntropyAnalyzer.Run(Options(path, AnalysisEngine.Torch), AnalyzerModels.Prompts);
        foreach (var engine in new[] { AnalysisEngine.Torch, AnalysisEngine.Llama })
        {
            var sub = InternalEntropyAnalyzer.Run(Options(path, engine) with { Layers = [2, 1] }, AnalyzerModels.Prompts);
            Assert.Equal([1, 2], sub.Layers.Select(l => l.Index));
            Assert.True(MaxDiff(sub, new AnalysisResult
            {
                Model = full.Model, Architecture = full.Architecture, Norm = full.Norm, Engine = full.Engine, TokenIds = full.TokenIds,
                Layers = [full.Layers[1], full.Layers[2]], FinalEntropy = full.FinalEntropy, EmbeddingEntropy = full.EmbeddingEntropy,
            }) <= 1e-4);
        }
    }

    /// <summary>The trainer's entry: a loaded model and token ids (as <c>train --bupo-layer auto</c> calls it).</summary>
    [Fact]
    public void LoadedTrainerModelAndTokenIds()
    {
        var path = models.Path("llama");
        var byPath = InternalEntropyAnalyzer.Run(Options(path, AnalysisEngine.Torch), AnalyzerModels.Prompts);
        using var model = TransformerModel.FromGguf(path);
        var progress = new List<AnalyzeProgress>();
        var loaded = InternalEntropyAnalyzer.Run(new AnalyzeOptions { Model = model, Engine = AnalysisEngine.Torch }, byPath.TokenIds,
            new SyncProgress<AnalyzeProgress>(progress.Add));
        Assert.Equal(byPath.TokenIds, loaded.TokenIds);
        Assert.True(MaxDiff(byPath, loaded) <= 1e-6);
        Assert.Equal(byPath.BoundaryLayer, loaded.BoundaryLayer);
        Assert.Equal(new AnalyzeProgress("analyze", 2, 2, byPath.TokenIds.Sum(t => t.Length)), progress[^1]);
        Assert.False(model.TokenEmbedding.grad is { } g && g.numel() > 0); // no autograd graph was built
        Assert.Throws<BupoException>(() => InternalEntropyAnalyzer.Run(new AnalyzeOptions { Model = model }, byPath.TokenIds)); // llama engine needs no model
    }


    [Fact]
    public void LlamaEngineDecodesLongSequencesInChunks()
    {
        var path = models.Path("llama");
        var one = InternalEntropyAnalyzer.Run(Options(path, AnalysisEngine.Llama), AnalyzerModels.Prompts);
        var chunked = InternalEntropyAnalyzer.Run(Options(path, AnalysisEngine.Llama) with { LlamaBatchSize = 4 }, AnalyzerModels.Prompts);
        Assert.True(MaxDiff(one, chunked) <= 1e-4);
    }

    [Fact]
    public void BadInputsAreClearErrors()
    {
        var path = models.Path("llama");
        // The first prompt fits in 8 tokens, the second does not: the error names the second.
        var e = Assert.Throws<BupoException>(() => InternalEntropyAnalyzer.Run(Options(path, AnalysisEngine.Torch) with { ContextSize = 8 },
            new[] { "a", string.Join(' ', Enumerable.Repeat("once upon a time", 20)) }));
        Assert.Contains("prompt 1 is", e.Message);
        Assert.Contains("context of 8 tokens", e.Message);
        e = Assert.Throws<BupoException>(() => InternalEntropyAnalyzer.Run(Options(path, AnalysisEngine.Torch) with { Layers = [5] }, AnalyzerModels.Prompts));
        Assert.Contains("out of range", e.Message);
        e = Assert.Throws<BupoException>(() => InternalEntropyAnalyzer.Run(Options(path, AnalysisEngine.Torch), new[] { "ok", " " }));
        Assert.Contains("prompt 1 is empty", e.Message);
        e = Assert.Throws<BupoException>(() => InternalEntropyAnalyzer.Run(Options(path, AnalysisEngine.Torch) with { Positions = AnalysisPositions.Response }, AnalyzerModels.Prompts));
        Assert.Contains("--generate", e.Message);
        e = Assert.Throws<BupoException>(() => InternalEntropyAnalyzer.Run(Options(path, AnalysisEngine.Torch), new[] { new[] { 1, 600 } }));
        Assert.Contains("outside the vocabulary", e.Message);
        Assert.Throws<BupoException>(() => AnalyzeOptions.ParseLayers("0,x", 5));
        Assert.Equal([0, 2, 3, 4], AnalyzeOptions.ParseLayers("4, 0,2-3", 5));
    }
}
