using BuPO.Hybrid.Gguf;
using BuPO.Hybrid.Tests.Support;

namespace BuPO.Hybrid.Llama.Tests;

[Collection(LlamaCollection.Name)]
public class ProbeTests(LlamaFixture fx)
{
    private static void Close(ReadOnlySpan<float> want, ReadOnlySpan<float> got, float tol, string what)
    {
        Assert.Equal(want.Length, got.Length);
        for (int i = 0; i < want.Length; i++)
            if (!(Math.Abs(want[i] - got[i]) <= tol * Math.Max(1f, Math.Abs(want[i]))))
                Assert.Fail($"{what}[{i}]: want {want[i]}, got {got[i]}");
    }

    [Theory]
    [InlineData(512)] // one micro-batch
    [InlineData(4)]   // the batch is split into micro-batches: rows are appended in order
    public void CapturesResidualStreamAndReproducesLogits(int ubatch)
    {
        var model = fx.StoriesShaped;
        int L = model.LayerCount, d = model.EmbeddingSize, V = model.VocabSize;
        var names = Enumerable.Range(0, L).Select(i => $"l_out-{i}")
            .Concat(["result_norm", "embd", "attn_norm-0", "attn_out-0", "ffn_inp-0", "ffn_norm-0", "ffn_out-0", "no_such_tensor"]).ToArray();
        var probe = new TensorProbe(names);
        using var ctx = LlamaContext.Create(model, new LlamaContextOptions { Threads = 1, ContextSize = 256, BatchSize = 64, UBatchSize = ubatch, Probe = probe });
        Assert.Same(probe, ctx.Probe);

        var tokens = model.Vocab.Encode("Once upon a time, there was a little girl named Lily. She loved to play.");
        int n = tokens.Length;
        using var batch = new LlamaBatch(64);
        for (int i = 0; i < n; i++) batch.Add(tokens[i], i, 0, wantLogits: true); // all rows survive the last block
        ctx.Decode(batch);

        foreach (var name in names.Where(x => x != "no_such_tensor"))
        {
            var t = probe.Get(name);
            Assert.Equal(n, t.Rows);
            Assert.Equal(d, t.Cols);
            Assert.Equal(n * d, t.Data.Length);
            Assert.All(t.Data, v => Assert.True(float.IsFinite(v)));
        }
        Assert.False(probe.TryGet("no_such_tensor", out _));
        Assert.Throws<KeyNotFoundException>(() => probe.Get("l_out-999"));

        using var gguf = GgufFile.Open(fx.StoriesShapedPath);
        var tokEmbd = gguf.ReadTensorFloat("token_embd.weight");                // [V rows x d]
        var unembed = gguf.FindTensor("output.weight") is { } o ? gguf.ReadTensorFloat(o) : tokEmbd; // tied or not
        var outNorm = gguf.ReadTensorFloat("output_norm.weight");
        var eps = (float)gguf.RequireFloat("llama.attention.layer_norm_rms_epsilon");

        var embd = probe.Get("embd");
        var attnOut = probe.Get("attn_out-0");
        var ffnInp = probe.Get("ffn_inp-0");
        var ffnOut = probe.Get("ffn_out-0");
        var l0 = probe.Get("l_out-0");
        var last = probe.Get($"l_out-{L - 1}");
        var norm = probe.Get("result_norm");
        var sum = new float[d];
        for (int r = 0; r < n; r++)
        {
            Close(tokEmbd.AsSpan(tokens[r] * d, d), embd.Row(r), 0f, $"embd row {r}");
            for (int c = 0; c < d; c++) sum[c] = embd.Row(r)[c] + attnOut.Row(r)[c];
            Close(sum, ffnInp.Row(r), 1e-5f, $"ffn_inp-0 row {r}");
            for (int c = 0; c < d; c++) sum[c] = ffnInp.Row(r)[c] + ffnOut.Row(r)[c];
            Close(sum, l0.Row(r), 1e-5f, $"l_out-0 row {r}");

            // result_norm = RMSNorm(l_out-last) * output_norm.weight
            var h = last.Row(r);
            double ms = 0;
            for (int c = 0; c < d; c++) ms += (double)h[c] * h[c];
            var inv = 1.0 / Math.Sqrt(ms / d + eps);
            var want = new float[d];
            for (int c = 0; c < d; c++) want[c] = (float)(h[c] * inv * outNorm[c]);
            Close(want, norm.Row(r), 1e-4f, $"result_norm row {r}");

            // logits = result_norm . E^T reproduce llama_get_logits_ith
            var logits = ctx.GetLogits(r);
            var mine = new float[V];
            for (int v = 0; v < V; v++)
            {
                double acc = 0;
                for (int c = 0; c < d; c++) acc += (double)norm.Row(r)[c] * unembed[v * d + c];
                mine[v] = (float)acc;
            }
            Close(logits, mine, 1e-4f, $"logits row {r}");
        }

        // The next decode starts a fresh capture.
        batch.Clear();
        batch.Add(tokens[0], n, 0, wantLogits: true);
        ctx.Decode(batch);
        Assert.Equal(1, probe.Get("l_out-0").Rows);
        Assert.Equal(1, probe.Get("result_norm").Rows);
        var first = probe.Get("result_norm").Data.ToArray();

        // Same shape again (llama.cpp may reuse the graph): the callback still fires and sees the new token.
        batch.Clear();
        batch.Add(tokens[1], n + 1, 0, wantLogits: true);
        ctx.Decode(batch);
        var second = probe.Get("result_norm");
        Assert.Equal(1, second.Rows);
        Assert.NotEqual(first, second.Data);
        var nextLogits = ctx.GetLogits(0);
        for (int v = 0; v < 8; v++)
        {
            double acc = 0;
            for (int c = 0; c < d; c++) acc += (double)second.Data[c] * unembed[v * d + c];
            Assert.Equal(nextLogits[v], (float)acc, 1e-4f);
        }
    }

    [Fact]
    public void LastBlockKeepsOnlyRequestedRows()
    {
        var model = fx.StoriesShaped;
        var probe = new TensorProbe($"l_out-{model.LayerCount - 2}", $"l_out-{model.LayerCount - 1}", "result_norm");
        using var ctx = LlamaContext.Create(model, new LlamaContextOptions { Threads = 1, ContextSize = 256, Probe = probe });
        var tokens = model.Vocab.Encode("Once upon a time there was");
        using var batch = new LlamaBatch(32);
        for (int i = 0; i < tokens.Length; i++) batch.Add(tokens[i], i, 0, wantLogits: i == tokens.Length - 1);
        ctx.Decode(batch);
        Assert.Equal(tokens.Length, probe.Get($"l_out-{model.LayerCount - 2}").Rows);
        Assert.Equal(1, probe.Get($"l_out-{model.LayerCount - 1}").Rows);
        Assert.Equal(1, probe.Get("result_norm").Rows);
    }

    [Fact]
    public void EmptyProbeInstallsNoCallback()
    {
        using var ctx = LlamaContext.Create(fx.StoriesShaped, new LlamaContextOptions { Threads = 1, ContextSize = 256, Probe = new TensorProbe() });
        Assert.Null(ctx.Probe);
    }
}
