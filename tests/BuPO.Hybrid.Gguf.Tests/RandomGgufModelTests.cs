using BuPO.Hybrid.Tests.Support;

namespace BuPO.Hybrid.Gguf.Tests;

public class RandomGgufModelTests
{
    /// <summary>
    /// Tensors llama.cpp's load_tensors requires for each architecture (src/models/{qwen2,qwen3,llama}.cpp),
    /// written out independently of the product's layout code: name -> ggml shape.
    /// </summary>
    private static Dictionary<string, long[]> Expected(string arch, int layers, long embd, long heads, long kvHeads, long headDim, long ff, long vocab, bool tied)
    {
        var d = new Dictionary<string, long[]>
        {
            ["token_embd.weight"] = [embd, vocab],
            ["output_norm.weight"] = [embd],
        };
        if (!tied) d["output.weight"] = [embd, vocab];
        for (var i = 0; i < layers; i++)
        {
            d[$"blk.{i}.attn_norm.weight"] = [embd];
            d[$"blk.{i}.attn_q.weight"] = [embd, headDim * heads];
            d[$"blk.{i}.attn_k.weight"] = [embd, headDim * kvHeads];
            d[$"blk.{i}.attn_v.weight"] = [embd, headDim * kvHeads];
            d[$"blk.{i}.attn_output.weight"] = [headDim * heads, embd];
            d[$"blk.{i}.ffn_norm.weight"] = [embd];
            d[$"blk.{i}.ffn_gate.weight"] = [embd, ff];
            d[$"blk.{i}.ffn_down.weight"] = [ff, embd];
            d[$"blk.{i}.ffn_up.weight"] = [embd, ff];
            if (arch == "qwen2")
            {
                d[$"blk.{i}.attn_q.bias"] = [embd];
                d[$"blk.{i}.attn_k.bias"] = [headDim * kvHeads];
                d[$"blk.{i}.attn_v.bias"] = [headDim * kvHeads];
            }
            if (arch == "qwen3")
            {
                d[$"blk.{i}.attn_q_norm.weight"] = [headDim];
                d[$"blk.{i}.attn_k_norm.weight"] = [headDim];
            }
        }
        return d;
    }

    [Theory]
    [InlineData("qwen2-tiny", "qwen2", 2, 16, true)]
    [InlineData("qwen3-tiny", "qwen3", 2, 16, true)]
    [InlineData("llama-tiny", "llama", 3, 16, false)]
    public void TinyModelsHaveLlamaCppTensorsAndMetadata(string shape, string arch, int layers, int headDim, bool tied)
    {
        using var vocabDir = new TempDir();
        var vocabPath = RandomTestModels.SpmVocab(vocabDir.Path); // 512 SentencePiece tokens, as stories260K has
        using var tmp = new TempDir();
        var path = tmp.File($"{shape}.gguf");
        var spec = RandomModelSpec.Named(shape) with { TensorType = GgmlType.F16, Seed = 7 };
        RandomGgufModel.Write(path, spec, vocabPath);

        using var vocab = GgufFile.Open(vocabPath);
        using var f = GgufFile.Open(path);
        Assert.Equal(arch, f.Architecture);
        var expected = Expected(arch, layers, 64, 4, 2, headDim, 128, 512, tied);
        Assert.Equal(expected.Keys.Order(), f.Tensors.Select(t => t.Name).Order());
        foreach (var t in f.Tensors)
        {
            Assert.Equal(expected[t.Name], t.Shape);
            Assert.Equal(t.Shape.Length == 1 ? GgmlType.F32 : GgmlType.F16, t.Type);
        }

        void U32(string key, long value) { Assert.Equal(GgufValueType.UInt32, f.Get(key)!.Type); Assert.Equal(value, f.GetInt(key)); }
        void F32(string key, float value) { Assert.Equal(GgufValueType.Float32, f.Get(key)!.Type); Assert.Equal(value, (float)f.Get(key)!.Value); }
        U32($"{arch}.block_count", layers);
        U32($"{arch}.context_length", 2048);
        U32($"{arch}.embedding_length", 64);
        U32($"{arch}.feed_forward_length", 128);
        U32($"{arch}.attention.head_count", 4);
        U32($"{arch}.attention.head_count_kv", 2);
        U32($"{arch}.attention.key_length", headDim);
        U32($"{arch}.attention.value_length", headDim);
        U32($"{arch}.rope.dimension_count", headDim);
        U32("general.file_type", 1);
        F32($"{arch}.rope.freq_base", arch == "llama" ? 10000f : 1e6f);
        F32($"{arch}.attention.layer_norm_rms_epsilon", arch == "llama" ? 1e-5f : 1e-6f);
        Assert.Equal(spec.Name, f.GetString("general.name"));

        // every tokenizer key copied, in order, with equal values
        var srcTok = vocab.Metadata.Where(kv => kv.Key.StartsWith("tokenizer.")).ToList();
        var dstTok = f.Metadata.Where(kv => kv.Key.StartsWith("tokenizer.")).ToList();
        Assert.Equal(srcTok.Select(kv => kv.Key), dstTok.Select(kv => kv.Key));
        Assert.Equal((string[])vocab.GetArray("tokenizer.ggml.tokens")!.Items, (string[])f.GetArray("tokenizer.ggml.tokens")!.Items);
        Assert.Equal((float[])vocab.GetArray("tokenizer.ggml.scores")!.Items, (float[])f.GetArray("tokenizer.ggml.scores")!.Items);
        Assert.Equal(vocab.GetInt("tokenizer.ggml.bos_token_id"), f.GetInt("tokenizer.ggml.bos_token_id"));
    }

    [Fact]
    public void WeightsHaveTheRequestedScaleAndAreDeterministic()
    {
        using var vocabDir = new TempDir();
        var vocabPath = RandomTestModels.SpmVocab(vocabDir.Path); // 512 SentencePiece tokens, as stories260K has
        using var tmp = new TempDir();
        var spec = RandomModelSpec.Named("qwen3-tiny") with { Seed = 3, WeightStd = 0.05f, NormNoise = 0.1f };
        RandomGgufModel.Write(tmp.File("a.gguf"), spec, vocabPath);
        RandomGgufModel.Write(tmp.File("b.gguf"), spec, vocabPath);
        RandomGgufModel.Write(tmp.File("c.gguf"), spec with { Seed = 4 }, vocabPath);
        Assert.Equal(File.ReadAllBytes(tmp.File("a.gguf")), File.ReadAllBytes(tmp.File("b.gguf")));

        using var a = GgufFile.Open(tmp.File("a.gguf"));
        using var c = GgufFile.Open(tmp.File("c.gguf"));
        static (double Mean, double Std) Stats(float[] x) { var m = x.Average(v => (double)v); return (m, Math.Sqrt(x.Average(v => (v - m) * (v - m)))); }

        var ffn = a.ReadTensorFloat("blk.1.ffn_up.weight"); // 8192 values
        var (mean, std) = Stats(ffn);
        Assert.InRange(mean, -0.003, 0.003);
        Assert.InRange(std, 0.047, 0.053);
        Assert.True(ffn.Distinct().Count() > ffn.Length / 2, "weights are not varied");
        Assert.NotEqual(ffn, c.ReadTensorFloat("blk.1.ffn_up.weight"));
        Assert.NotEqual(ffn, a.ReadTensorFloat("blk.0.ffn_up.weight")); // tensors differ from each other

        var norm = a.ReadTensorFloat("blk.0.attn_norm.weight");
        (mean, std) = Stats(norm);
        Assert.InRange(mean, 0.96, 1.04);
        Assert.InRange(std, 0.07, 0.13);

        var embd = a.ReadTensorFloat("token_embd.weight");
        (_, std) = Stats(embd);
        Assert.InRange(std, 0.118, 0.132); // 1/sqrt(64)
    }

    [Fact]
    public void Qwen2TinyWithTheQwen2VocabTakesItsTokenCount()
    {
        var vocabPath = SharedAssets.RequireFile(SharedAssets.Qwen2Vocab);
        using var tmp = new TempDir();
        var path = tmp.File("q2.gguf");
        RandomGgufModel.Write(path, RandomModelSpec.Named("qwen2-tiny") with { TensorType = GgmlType.Q8_0 }, vocabPath);
        using var vocab = GgufFile.Open(vocabPath);
        using var f = GgufFile.Open(path);
        var n = vocab.GetArray("tokenizer.ggml.tokens")!.Count;
        Assert.Equal(151936, n);
        var embd = f.GetTensor("token_embd.weight");
        Assert.Equal(new long[] { 64, n }, embd.Shape);
        Assert.Equal(GgmlType.Q8_0, embd.Type);
        Assert.Equal(7, f.GetInt("general.file_type"));
        Assert.Equal(vocab.GetString("tokenizer.chat_template"), f.GetString("tokenizer.chat_template"));
        Assert.Equal(vocab.GetString("tokenizer.ggml.pre"), f.GetString("tokenizer.ggml.pre"));
        Assert.Equal(vocab.GetArray("tokenizer.ggml.merges")!.Count, f.GetArray("tokenizer.ggml.merges")!.Count);
        Assert.Null(f.FindTensor("output.weight"));
    }

    [Fact]
    public void Qwen3_0_6BLayoutMatchesThePublishedModel()
    {
        var spec = RandomModelSpec.Named("qwen3-0.6b");
        var layout = RandomGgufModel.Layout(spec, 151936);
        Assert.Equal(2 + 28 * 11, layout.Count); // token_embd, output_norm (tied: no output.weight), 11 per layer
        Assert.Equal(new long[] { 1024, 2048 }, layout.Single(t => t.Name == "blk.27.attn_q.weight").Shape);
        Assert.Equal(new long[] { 1024, 1024 }, layout.Single(t => t.Name == "blk.0.attn_k.weight").Shape);
        Assert.Equal(new long[] { 2048, 1024 }, layout.Single(t => t.Name == "blk.3.attn_output.weight").Shape);
        Assert.Equal(new long[] { 128 }, layout.Single(t => t.Name == "blk.3.attn_k_norm.weight").Shape);
        Assert.Equal(new long[] { 3072, 1024 }, layout.Single(t => t.Name == "blk.5.ffn_down.weight").Shape);
        Assert.DoesNotContain(layout, t => t.Name == "output.weight");
        long Params(IEnumerable<RandomGgufModel.TensorSpec> ts) => ts.Sum(t => t.Shape.Aggregate(1L, (a, b) => a * b));
        // Qwen3-0.6B model card: 0.6B parameters, 0.44B non-embedding
        Assert.InRange(Params(layout), 0.55e9, 0.65e9);
        Assert.InRange(Params(layout.Where(t => t.Name != "token_embd.weight")), 0.435e9, 0.445e9);
    }

    [Fact]
    public void BadSpecsAreUserErrors()
    {
        Assert.Throws<BupoException>(() => RandomModelSpec.Named("gpt5-huge"));
        using var vocabDir = new TempDir();
        var vocabPath = RandomTestModels.SpmVocab(vocabDir.Path); // 512 SentencePiece tokens, as stories260K has
        using var tmp = new TempDir();
        var good = RandomModelSpec.Named("qwen2-tiny");
        Assert.Throws<BupoException>(() => RandomGgufModel.Write(tmp.File("x.gguf"), good with { Architecture = "mamba" }, vocabPath));
        Assert.Throws<BupoException>(() => RandomGgufModel.Write(tmp.File("x.gguf"), good with { HeadDim = 32 }, vocabPath)); // qwen2: 32 x 4 != 64
        Assert.Throws<BupoException>(() => RandomGgufModel.Write(tmp.File("x.gguf"), good with { KvHeads = 3 }, vocabPath));
        Assert.Throws<BupoException>(() => RandomGgufModel.Write(tmp.File("x.gguf"), good with { TensorType = GgmlType.Q4_K }, vocabPath));
        Assert.Empty(Directory.GetFiles(tmp.Path));
    }
}
