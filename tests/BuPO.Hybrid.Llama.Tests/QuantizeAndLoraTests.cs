using BuPO.Hybrid.Gguf;
using BuPO.Hybrid.Tests.Support;

namespace BuPO.Hybrid.Llama.Tests;

[Collection(LlamaCollection.Name)]
public class QuantizeAndLoraTests(LlamaFixture fx) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("bupo-llama-q-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void QuantizesToQ8_0ThenLoadsAndGenerates()
    {
        var src = fx.StoriesShapedPath;
        var dst = Path.Combine(_dir, "stories-shape-q8_0.gguf");
        LlamaQuantizer.Quantize(src, dst, "q8_0", threads: 2);
        Assert.True(File.Exists(dst));
        Assert.Equal([Path.GetFileName(dst)], Directory.GetFiles(_dir).Select(Path.GetFileName)); // no temp file left
        using (var g = GgufFile.Open(dst))
        {
            Assert.Equal(7, g.RequireInt("general.file_type")); // LLAMA_FTYPE_MOSTLY_Q8_0
            Assert.Equal(GgmlType.Q8_0, g.GetTensor("blk.0.attn_q.weight").Type); // rows of 64 = 2 Q8_0 blocks
            Assert.Equal(172, g.GetTensor("blk.0.ffn_down.weight").Shape[0]);
            Assert.Equal(GgmlType.F16, g.GetTensor("blk.0.ffn_down.weight").Type); // rows of 172: not whole blocks, F16
        }
        // llama.cpp 815a2a59's own quantizer refuses a file with those rows: why Q8_0 is ours.
        var refused = Assert.Throws<BupoException>(() => LlamaQuantizer.QuantizeWithLlamaCpp(src, Path.Combine(_dir, "llama-q8.gguf"), "Q8_0", threads: 1));
        Assert.Contains("llama_model_quantize returned", refused.Message);
        Assert.Equal([Path.GetFileName(dst)], Directory.GetFiles(_dir).Select(Path.GetFileName)); // its temporary file is gone too
        Assert.True(new FileInfo(dst).Length < new FileInfo(src).Length);

        using var q = LlamaModel.Load(dst);
        Assert.Contains("Q8_0", q.Description);
        using var ctx = LlamaContext.Create(q, new LlamaContextOptions { Threads = 1, ContextSize = 256 });
        var r = LlamaFixture.GreedyDecode(ctx, q.Vocab.Encode("Once upon a time"), 32);
        Assert.Equal(32, r.Tokens.Length);
        Assert.All(r.Tokens, t => Assert.InRange(t, 0, q.VocabSize - 1));
        // Q8_0 barely moves the model: after the same prompt its logits are those of the F32 model to within a
        // tenth of their spread (8-bit blocks with one scale: relative error about 0.5% per weight; measured: 3%).
        using var fctx = LlamaContext.Create(fx.StoriesShaped, new LlamaContextOptions { Threads = 1, ContextSize = 256 });
        var prompt = q.Vocab.Encode("Once upon a time");
        Assert.Equal(fx.StoriesShaped.Vocab.Encode("Once upon a time"), prompt);
        var qLogits = LastLogits(ctx, prompt);
        var fLogits = LastLogits(fctx, prompt);
        double mean = fLogits.Average(v => (double)v), spread = Math.Sqrt(fLogits.Average(v => (v - mean) * (v - mean)));
        double maxDiff = fLogits.Zip(qLogits, (a, b) => Math.Abs((double)a - b)).Max();
        TestContext.Current.TestOutputHelper?.WriteLine($"logits spread {spread:G3}, max |Q8_0 - F32| {maxDiff:G3}");
        Assert.True(maxDiff > 0, "the Q8_0 model gives the F32 model's logits bit for bit: nothing was quantized");
        Assert.True(maxDiff < 0.1 * spread, $"max |Q8_0 - F32| = {maxDiff:G3} for logits of spread {spread:G3}");
    }

    /// <summary>The logits after decoding <paramref name="prompt"/> from an empty context.</summary>
    private static float[] LastLogits(LlamaContext ctx, int[] prompt)
    {
        ctx.Clear();
        using var batch = new LlamaBatch(prompt.Length);
        for (int i = 0; i < prompt.Length; i++) batch.Add(prompt[i], i, 0, i == prompt.Length - 1);
        ctx.Decode(batch);
        return ctx.GetLogits(prompt.Length - 1).ToArray();
    }

    [Fact]
    public void StoriesQ8_0KeepsItsGreedyStart()
    {
        // On stories260K itself Q8_0 moves no greedy choice of the first 8 tokens.
        var src = SharedAssets.RequireFile(SharedAssets.StoriesModel);
        var dst = Path.Combine(_dir, "stories-q8_0.gguf");
        LlamaQuantizer.Quantize(src, dst, "q8_0", threads: 2);
        using var q = LlamaModel.Load(dst);
        using var ctx = LlamaContext.Create(q, new LlamaContextOptions { Threads = 1, ContextSize = 256 });
        var r = LlamaFixture.GreedyDecode(ctx, q.Vocab.Encode("Once upon a time"), 8);
        using var fctx = LlamaContext.Create(fx.Stories, new LlamaContextOptions { Threads = 1, ContextSize = 256 });
        var f = LlamaFixture.GreedyDecode(fctx, fx.Stories.Vocab.Encode("Once upon a time"), 8);
        Assert.Equal(f.Tokens, r.Tokens);
    }

    [Fact]
    public void QuantizeErrors()
    {
        var src = fx.StoriesShapedPath;
        var e = Assert.Throws<BupoException>(() => LlamaQuantizer.Quantize(src, Path.Combine(_dir, "x.gguf"), "Q9_9"));
        Assert.Contains("Q9_9", e.Message);
        e = Assert.Throws<BupoException>(() => LlamaQuantizer.Quantize(Path.Combine(_dir, "missing.gguf"), Path.Combine(_dir, "x.gguf"), "Q8_0"));
        Assert.Contains("missing.gguf", e.Message);
        Assert.Empty(Directory.GetFiles(_dir));
    }

    [Fact]
    public void LoraAdapterAddsScaledLowRankDeltaAndClears()
    {
        var model = fx.StoriesShaped;
        int L = model.LayerCount;
        var target = $"blk.{L - 1}.ffn_down.weight";
        long[] shape;
        using (var g = GgufFile.Open(fx.StoriesShapedPath)) shape = g.GetTensor(target).Shape;
        int nIn = (int)shape[0], nOut = (int)shape[1], r = 2;
        var rng = new Random(3);
        var a = Enumerable.Range(0, nIn * r).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray();  // ne [nIn, r]: r rows of nIn
        var b = Enumerable.Range(0, r * nOut).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray(); // ne [r, nOut]: nOut rows of r
        var path = Path.Combine(_dir, "lora.gguf");
        new TestGgufWriter()
            .Add("general.architecture", "llama").Add("general.type", "adapter").Add("adapter.type", "lora")
            .Add("adapter.lora.alpha", (float)r) // scale = user scale * alpha / rank = user scale
            .AddTensor(target + ".lora_a", [nIn, r], a)
            .AddTensor(target + ".lora_b", [r, nOut], b)
            .Write(path);

        var act = $"ffn_swiglu-{L - 1}";
        var probe = new TensorProbe($"ffn_out-{L - 1}", act);
        using var ctx = LlamaContext.Create(model, new LlamaContextOptions { Threads = 1, ContextSize = 256, Probe = probe });
        var tokens = model.Vocab.Encode("Once upon a time");
        (float[] Out, float[] X, float[] Logits) Run()
        {
            ctx.Clear();
            using var batch = new LlamaBatch(32);
            for (int i = 0; i < tokens.Length; i++) batch.Add(tokens[i], i, 0, true);
            ctx.Decode(batch);
            return (probe.Get($"ffn_out-{L - 1}").Data, probe.Get(act).Data, ctx.GetLogits(tokens.Length - 1).ToArray());
        }

        var (baseOut, x, baseLogits) = Run();
        Assert.Equal(tokens.Length * nIn, x.Length);
        using var lora = LlamaLoraAdapter.Load(model, path);
        const float scale = 0.5f;
        ctx.ApplyLora(lora, scale);
        Assert.Single(ctx.LoraAdapters);
        var (loraOut, x2, loraLogits) = Run();
        Assert.Equal(x, x2); // the adapter sits after the activation
        for (int t = 0; t < tokens.Length; t++)
        {
            var ax = new double[r];
            for (int j = 0; j < r; j++)
                for (int k = 0; k < nIn; k++) ax[j] += a[j * nIn + k] * x[t * nIn + k];
            for (int o = 0; o < nOut; o++)
            {
                double delta = 0;
                for (int j = 0; j < r; j++) delta += b[o * r + j] * ax[j];
                Assert.Equal(baseOut[t * nOut + o] + scale * delta, loraOut[t * nOut + o], 1e-4);
            }
        }
        Assert.Contains(Enumerable.Range(0, baseLogits.Length), v => Math.Abs(baseLogits[v] - loraLogits[v]) > 1e-3);

        lora.Dispose(); // still applied: freed only when the context lets go
        var (again, _, _) = Run();
        Assert.Equal(loraOut, again);
        ctx.ClearLora();
        var (cleared, _, clearedLogits) = Run();
        Assert.Equal(baseOut, cleared);
        Assert.Equal(baseLogits, clearedLogits);
    }

    [Fact]
    public void LoraForAnotherModelIsRejected()
    {
        var path = Path.Combine(_dir, "bad-lora.gguf");
        new TestGgufWriter()
            .Add("general.architecture", "llama").Add("general.type", "adapter").Add("adapter.type", "lora").Add("adapter.lora.alpha", 1f)
            .AddTensor("blk.0.no_such.weight.lora_a", [4, 1], new float[4])
            .AddTensor("blk.0.no_such.weight.lora_b", [1, 4], new float[4])
            .Write(path);
        var e = Assert.Throws<BupoException>(() => LlamaLoraAdapter.Load(fx.StoriesShaped, path));
        Assert.Contains("could not load the LoRA adapter", e.Message);
        Assert.Contains("does not exist in base model", e.Message);
    }
}
