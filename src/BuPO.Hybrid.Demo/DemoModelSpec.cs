using BuPO.Hybrid.Gguf;

namespace BuPO.Hybrid.Demo;

/// <summary>
/// Shape of the demo's small qwen3 model (a decoder with q/k norm, GQA, SwiGLU, tied embeddings) over the
/// <see cref="CharVocabulary"/>.
/// </summary>
public sealed record DemoModelSpec
{
    public int Layers { get; init; } = 6;
    public int Embedding { get; init; } = 128;
    public int Heads { get; init; } = 4;
    public int KvHeads { get; init; } = 2;
    public int HeadDim { get; init; } = 32;
    public int FeedForward { get; init; } = 384;
    public int ContextLength { get; init; } = 512;

    /// <summary>Approximate trainable parameter count (tied embeddings).</summary>
    public long ParameterCount
    {
        get
        {
            long d = Embedding, q = Heads * HeadDim, kv = KvHeads * HeadDim, ff = FeedForward;
            var block = 2 * d + d * q + 2 * d * kv + 2L * HeadDim + q * d + 3 * d * ff;
            return Layers * block + d + d * CharVocabulary.Size;
        }
    }

    /// <summary>A short description, e.g. "qwen3 6x128 (4/2 heads x 32, ff 384), 1.2M params".</summary>
    public override string ToString() =>
        $"qwen3 {Layers}x{Embedding} ({Heads}/{KvHeads} heads x {HeadDim}, ff {FeedForward}), {ParameterCount / 1e6:0.00}M params, vocab {CharVocabulary.Size} chars";

    /// <summary>A stable key of the shape for cache file names.</summary>
    public string CacheKey => $"qwen3-L{Layers}-d{Embedding}-h{Heads}x{HeadDim}-kv{KvHeads}-ff{FeedForward}-ctx{ContextLength}";

    /// <summary>Writes a randomly initialized model with this shape and the character vocabulary (F32 weights).</summary>
    public void WriteRandomGguf(string path, ulong seed)
    {
        var spec = new RandomModelSpec
        {
            Architecture = "qwen3",
            Name = "bupo-demo-arith",
            Layers = Layers,
            Embedding = Embedding,
            Heads = Heads,
            KvHeads = KvHeads,
            HeadDim = HeadDim,
            FeedForward = FeedForward,
            ContextLength = ContextLength,
            RopeBase = 10000f,
            RmsEps = 1e-6f,
            TiedEmbeddings = true,
            Seed = seed,
            TensorType = GgmlType.F32,
            WeightStd = 0.02f,
            NormNoise = 0f,
        };
        var dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        Directory.CreateDirectory(dir);
        var vocabPath = Path.Combine(dir, $".vocab-{Environment.ProcessId}-{Guid.NewGuid():N}.gguf");
        try
        {
            CharVocabulary.WriteVocabGguf(vocabPath);
            using var vocab = GgufFile.Open(vocabPath);
            RandomGgufModel.Write(path, spec, vocab);
        }
        finally
        {
            try { File.Delete(vocabPath); } catch (IOException) { }
        }
    }
}
