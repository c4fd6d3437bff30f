using BuPO.Hybrid.Gguf;
using BuPO.Hybrid.Tests.Support;

namespace BuPO.Hybrid.Llama.Tests;

[Collection(LlamaCollection.Name)]
public class ContextTests(LlamaFixture fx)
{
    [Fact]
    public void ModelMetadata()
    {
        var m = fx.StoriesShaped;
        var spec = RandomTestModels.StoriesShape;
        Assert.Equal("llama", m.Architecture);
        Assert.Equal(spec.Layers, m.LayerCount);
        Assert.Equal(spec.Embedding, m.EmbeddingSize);
        Assert.Equal(spec.Heads, m.HeadCount);
        Assert.Equal(spec.KvHeads, m.HeadCountKv);
        Assert.Equal(RandomTestModels.VocabSize, m.VocabSize);
        Assert.Equal(spec.ContextLength, m.TrainContextSize);
        Assert.Equal(spec.Layers.ToString(), m.GetMetadata("llama.block_count"));
        Assert.Null(m.GetMetadata("no.such.key"));
        Assert.Contains("general.architecture", m.Metadata.Keys);
        Assert.Equal("llama", m.Metadata["general.architecture"]);
        long elements;
        using (var g = GgufFile.Open(fx.StoriesShapedPath)) elements = g.Tensors.Sum(t => t.Shape.Aggregate(1L, (a, b) => a * b));
        Assert.Equal(elements, (long)m.ParameterCount);
        Assert.Null(m.ChatTemplate); // the generated vocabulary has none
        Assert.Throws<BupoException>(() => m.ApplyChatTemplate([new LlamaChatMessage("user", "hi")], true));
        // A built-in template by name (ChatML).
        var text = m.ApplyChatTemplate([new LlamaChatMessage("system", "Be brief."), new LlamaChatMessage("user", "hi")], true, "chatml");
        Assert.Equal("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", text);
    }

    [Fact]
    public void LoadRejectsMissingAndNonGgufFiles()
    {
        var missing = Path.Combine(Path.GetTempPath(), $"bupo-missing-{Guid.NewGuid():N}.gguf");
        var e = Assert.Throws<BupoException>(() => LlamaModel.Load(missing));
        Assert.Contains(missing, e.Message);
        var text = Path.GetTempFileName();
        try
        {
            File.WriteAllText(text, "not a model");
            e = Assert.Throws<BupoException>(() => LlamaModel.Load(text));
            Assert.Contains("not a GGUF file", e.Message);
            // A truncated GGUF never reaches llama.cpp: our reader names the file and the field that runs past its end.
            var whole = File.ReadAllBytes(fx.StoriesShapedPath);
            int cut = whole.AsSpan().IndexOf("tokenizer.ggml.tokens"u8) + 2000; // inside the 512-token array (about 6 KB)
            File.WriteAllBytes(text, whole.AsSpan(0, cut).ToArray());
            e = Assert.ThrowsAny<BupoException>(() => LlamaModel.Load(text));
            Assert.Contains(text, e.Message);
            Assert.Contains("tokenizer.ggml.tokens", e.Message);
        }
        finally { File.Delete(text); }
    }

    [Fact]
    public void SequenceCopySharesThePrefix()
    {
        var model = fx.StoriesShaped;
        using var ctx = LlamaContext.Create(model, new LlamaContextOptions { Threads = 1, ContextSize = 512, MaxSequences = 3 });
        var prompt = model.Vocab.Encode("Once upon a time, there was");
        using var batch = new LlamaBatch(64, 3);
        for (int i = 0; i < prompt.Length; i++) batch.Add(prompt[i], i, 0, i == prompt.Length - 1);
        ctx.Decode(batch);
        Assert.Equal(prompt.Length - 1, ctx.SequencePositionMax(0));
        Assert.Equal(-1, ctx.SequencePositionMax(1));

        ctx.SequenceCopy(0, 1);
        ctx.SequenceCopy(0, 2);
        Assert.Equal(prompt.Length - 1, ctx.SequencePositionMax(2));

        // The same next token on the three sequences gives the same logits; a different one does not.
        batch.Clear();
        int p = prompt.Length;
        batch.Add(261, p, 0, true);
        batch.Add(261, p, 1, true);
        batch.Add(300, p, 2, true);
        ctx.Decode(batch);
        var l0 = ctx.GetLogits(0).ToArray();
        var l1 = ctx.GetLogits(1).ToArray();
        var l2 = ctx.GetLogits(2).ToArray();
        for (int v = 0; v < l0.Length; v++) Assert.Equal(l0[v], l1[v], 1e-4f);
        Assert.Contains(Enumerable.Range(0, l0.Length), v => Math.Abs(l0[v] - l2[v]) > 1e-3);

        Assert.True(ctx.SequenceRemove(1));
        Assert.Equal(-1, ctx.SequencePositionMax(1));
        Assert.Equal(p, ctx.SequencePositionMax(0));
        Assert.True(ctx.SequenceRemove(2, p)); // drop the last token only
        Assert.Equal(p - 1, ctx.SequencePositionMax(2));
        ctx.Clear();
        Assert.Equal(-1, ctx.SequencePositionMax(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => ctx.SequenceCopy(0, 3));
    }

    [Fact]
    public void DecodeErrorsAreExceptionsWithTheCode()
    {
        var model = fx.StoriesShaped;
        using var ctx = LlamaContext.Create(model, new LlamaContextOptions { Threads = 1, ContextSize = 256, BatchSize = 256 });
        Assert.Equal(256, ctx.ContextSize);
        using var batch = new LlamaBatch(256);
        for (int i = 0; i < 200; i++) batch.Add(1 + i % 400, i, 0, false);
        ctx.Decode(batch);
        batch.Clear();
        for (int i = 0; i < 100; i++) batch.Add(5, 200 + i, 0, i == 99); // 300 > 256 cells
        var e = Assert.Throws<LlamaDecodeException>(() => ctx.Decode(batch));
        Assert.Equal(1, e.Code);
        Assert.Contains("returned 1", e.Message);

        // A token outside the vocabulary is rejected by llama.cpp's batch validation (-1), not a crash.
        ctx.Clear();
        batch.Clear();
        batch.Add(100000, 0, 0, true);
        e = Assert.Throws<LlamaDecodeException>(() => ctx.Decode(batch));
        Assert.True(e.Code < 0);

        // More tokens than the batch size.
        using var big = new LlamaBatch(300);
        for (int i = 0; i < 300; i++) big.Add(5, i, 0, false);
        Assert.Throws<LlamaDecodeException>(() => ctx.Decode(big));
        Assert.Throws<BupoException>(() => ctx.GetLogits(5)); // no logits requested there
    }

    [Fact]
    public void ContextKeepsTheModelAlive()
    {
        using var model = LlamaModel.Load(fx.StoriesShapedPath);
        var ctx = LlamaContext.Create(model, new LlamaContextOptions { Threads = 1, ContextSize = 256 });
        model.Dispose(); // freed only after the context
        using var batch = new LlamaBatch(8);
        batch.Add(1, 0, 0, true);
        ctx.Decode(batch);
        Assert.Equal(RandomTestModels.VocabSize, ctx.GetLogits(0).Length);
        ctx.Dispose();
        Assert.Throws<ObjectDisposedException>(() => ctx.Decode(batch));
    }
    [Fact]
    public void ASmallModelRewrittenAfterLoadingKeepsDecoding()
    {
        // As found: a model file truncated or overwritten by an outside cp while mapped gave SIGBUS at the next decode.
        // Files under GgufFile.InMemoryThreshold are read, not mapped: the file can change under a loaded model.
        var dir = Directory.CreateTempSubdirectory("bupo-rewrite-").FullName;
        try
        {
            var copy = Path.Combine(dir, "model.gguf");
            File.Copy(fx.StoriesShapedPath, copy);
            using var model = LlamaModel.Load(copy);
            using var ctx = LlamaContext.Create(model, new LlamaContextOptions { Threads = 1, ContextSize = 64 });
            using (var f = new FileStream(copy, FileMode.Open)) f.SetLength(0);
            using var batch = new LlamaBatch(8);
            batch.Add(1, 0, 0, true);
            ctx.Decode(batch);
            Assert.All(ctx.GetLogits(0).ToArray(), v => Assert.True(float.IsFinite(v)));
        }
        finally { Directory.Delete(dir, true); }
    }
}
