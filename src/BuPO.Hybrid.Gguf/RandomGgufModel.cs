namespace BuPO.Hybrid.Gguf;

/// <summary>
/// Hyperparameters of a random-weight model for <see cref="RandomGgufModel"/>. The vocabulary size is not
/// here: it is the token count of the tokenizer copied into the file.
/// </summary>
public sealed record RandomModelSpec
{
    /// <summary>general.architecture: qwen2, qwen3 or llama.</summary>
    public required string Architecture { get; init; }
    /// <summary>general.name.</summary>
    public string Name { get; init; } = "random";
    public required int Layers { get; init; }
    public required int Embedding { get; init; }
    public required int Heads { get; init; }
    public required int KvHeads { get; init; }
    /// <summary>Per-head dimension (attention.key_length = value_length); default Embedding / Heads.</summary>
    public int? HeadDim { get; init; }
    public required int FeedForward { get; init; }
    public int ContextLength { get; init; } = 4096;
    public float RopeBase { get; init; } = 10000f;
    public float RmsEps { get; init; } = 1e-6f;
    /// <summary>True: no output.weight, llama.cpp uses token_embd.weight for the output projection.</summary>
    public bool TiedEmbeddings { get; init; } = true;
    public ulong Seed { get; init; } = 1;
    /// <summary>Type of the 2-D weights (F32, F16, BF16 or Q8_0); 1-D norms and biases are always F32, as llama.cpp keeps them.</summary>
    public GgmlType TensorType { get; init; } = GgmlType.F32;
    /// <summary>Standard deviation of the projection weights and biases.</summary>
    public float WeightStd { get; init; } = 0.02f;
    /// <summary>Standard deviation of token_embd/output; default 1/sqrt(Embedding), which gives logits of about unit spread.</summary>
    public float? EmbeddingStd { get; init; }
    /// <summary>Norm weights are 1 + NormNoise * N(0,1).</summary>
    public float NormNoise { get; init; } = 0.05f;

    /// <summary>The per-head dimension in effect.</summary>
    public int EffectiveHeadDim => HeadDim ?? (Heads > 0 ? Embedding / Heads : 0);

    /// <summary>Names <see cref="Named"/> knows.</summary>
    public static IReadOnlyList<string> NamedShapes { get; } = ["qwen3-0.6b", "qwen3-1.7b", "qwen3-4b", "qwen3-8b", "qwen2-tiny", "qwen3-tiny", "llama-tiny"];

    /// <summary>A named shape: qwen3-0.6b, qwen3-1.7b, qwen3-4b, qwen3-8b (the real Qwen3 hyperparameters), or qwen2-tiny / qwen3-tiny / llama-tiny for tests.</summary>
    /// <exception cref="BupoException">Unknown name.</exception>
    public static RandomModelSpec Named(string name) => name.ToLowerInvariant() switch
    {
        "qwen3-0.6b" => new()
        {
            Architecture = "qwen3", Name = "random-qwen3-0.6b", Layers = 28, Embedding = 1024, Heads = 16, KvHeads = 8, HeadDim = 128,
            FeedForward = 3072, ContextLength = 40960, RopeBase = 1e6f, RmsEps = 1e-6f, TiedEmbeddings = true,
        },
        // The other Qwen3 dense sizes (their config.json: hidden, layers, heads/kv heads x 128, intermediate, tied or not).
        "qwen3-1.7b" => new()
        {
            Architecture = "qwen3", Name = "random-qwen3-1.7b", Layers = 28, Embedding = 2048, Heads = 16, KvHeads = 8, HeadDim = 128,
            FeedForward = 6144, ContextLength = 40960, RopeBase = 1e6f, RmsEps = 1e-6f, TiedEmbeddings = true,
        },
        "qwen3-4b" => new()
        {
            Architecture = "qwen3", Name = "random-qwen3-4b", Layers = 36, Embedding = 2560, Heads = 32, KvHeads = 8, HeadDim = 128,
            FeedForward = 9728, ContextLength = 40960, RopeBase = 1e6f, RmsEps = 1e-6f, TiedEmbeddings = true,
        },
        "qwen3-8b" => new()
        {
            Architecture = "qwen3", Name = "random-qwen3-8b", Layers = 36, Embedding = 4096, Heads = 32, KvHeads = 8, HeadDim = 128,
            FeedForward = 12288, ContextLength = 40960, RopeBase = 1e6f, RmsEps = 1e-6f, TiedEmbeddings = false,
        },
        "qwen2-tiny" => new()
        {
            Architecture = "qwen2", Name = "random-qwen2-tiny", Layers = 2, Embedding = 64, Heads = 4, KvHeads = 2,
            FeedForward = 128, ContextLength = 2048, RopeBase = 1e6f, RmsEps = 1e-6f, TiedEmbeddings = true,
        },
        "qwen3-tiny" => new()
        {
            Architecture = "qwen3", Name = "random-qwen3-tiny", Layers = 2, Embedding = 64, Heads = 4, KvHeads = 2, HeadDim = 16,
            FeedForward = 128, ContextLength = 2048, RopeBase = 1e6f, RmsEps = 1e-6f, TiedEmbeddings = true,
        },
        "llama-tiny" => new()
        {
            Architecture = "llama", Name = "random-llama-tiny", Layers = 3, Embedding = 64, Heads = 4, KvHeads = 2,
            FeedForward = 128, ContextLength = 2048, RopeBase = 10000f, RmsEps = 1e-5f, TiedEmbeddings = false,
        },
        _ => throw new BupoException($"unknown model shape '{name}' (known: {string.Join(", ", NamedShapes)})"),
    };
}

/// <summary>
/// Writes random-weight GGUF models that llama.cpp loads as qwen2, qwen3 or llama: the tensor names and ggml
/// shapes of its load_tensors for those architectures, the hyperparameter keys it reads, and the tokenizer
/// (every <c>tokenizer.*</c> key) copied from a vocab GGUF. Weights are deterministic in (seed, tensor name,
/// row) and approximately normal (sum of four uniforms), generated while writing so only a chunk is in memory.
/// </summary>
public static class RandomGgufModel
{
    /// <summary>The architectures supported.</summary>
    public static IReadOnlyList<string> Architectures { get; } = ["qwen2", "qwen3", "llama"];

    /// <summary>Kinds of generated tensor data.</summary>
    private enum Init { Weight, Embedding, Norm, Bias }

    /// <summary>One tensor of the layout: name and ggml shape (Shape[0] contiguous).</summary>
    public sealed record TensorSpec(string Name, long[] Shape);

    /// <summary>Tensor names and ggml shapes llama.cpp expects for the spec, in file order.</summary>
    public static IReadOnlyList<TensorSpec> Layout(RandomModelSpec spec, int vocabSize) =>
        LayoutWithInit(spec, vocabSize).Select(t => new TensorSpec(t.Name, t.Shape)).ToList();

    private static List<(string Name, long[] Shape, Init Init)> LayoutWithInit(RandomModelSpec spec, int vocabSize)
    {
        Validate(spec);
        long embd = spec.Embedding, hd = spec.EffectiveHeadDim, q = hd * spec.Heads, kv = hd * spec.KvHeads, ff = spec.FeedForward;
        var list = new List<(string, long[], Init)> { ("token_embd.weight", [embd, vocabSize], Init.Embedding) };
        for (var i = 0; i < spec.Layers; i++)
        {
            var p = $"blk.{i}.";
            list.Add((p + "attn_norm.weight", [embd], Init.Norm));
            list.Add((p + "attn_q.weight", [embd, q], Init.Weight));
            list.Add((p + "attn_k.weight", [embd, kv], Init.Weight));
            list.Add((p + "attn_v.weight", [embd, kv], Init.Weight));
            if (spec.Architecture == "qwen2")
            {
                list.Add((p + "attn_q.bias", [q], Init.Bias));
                list.Add((p + "attn_k.bias", [kv], Init.Bias));
                list.Add((p + "attn_v.bias", [kv], Init.Bias));
            }
            if (spec.Architecture == "qwen3")
            {
                list.Add((p + "attn_q_norm.weight", [hd], Init.Norm));
                list.Add((p + "attn_k_norm.weight", [hd], Init.Norm));
            }
            list.Add((p + "attn_output.weight", [q, embd], Init.Weight));
            list.Add((p + "ffn_norm.weight", [embd], Init.Norm));
            list.Add((p + "ffn_gate.weight", [embd, ff], Init.Weight));
            list.Add((p + "ffn_up.weight", [embd, ff], Init.Weight));
            list.Add((p + "ffn_down.weight", [ff, embd], Init.Weight));
        }
        list.Add(("output_norm.weight", [embd], Init.Norm));
        if (!spec.TiedEmbeddings) list.Add(("output.weight", [embd, vocabSize], Init.Embedding));
        return list;
    }

    private static void Validate(RandomModelSpec s)
    {
        if (!Architectures.Contains(s.Architecture)) throw new BupoException($"random model: architecture '{s.Architecture}' is not one of {string.Join(", ", Architectures)}");
        if (s.Layers <= 0 || s.Embedding <= 0 || s.Heads <= 0 || s.KvHeads <= 0 || s.FeedForward <= 0 || s.ContextLength <= 0 || s.EffectiveHeadDim <= 0)
            throw new BupoException("random model: layers, embedding, heads, kv heads, head dim, feed-forward and context length must be positive");
        if (s.Heads % s.KvHeads != 0) throw new BupoException($"random model: {s.Heads} heads is not a multiple of {s.KvHeads} kv heads");
        if (s.Architecture == "qwen2" && s.EffectiveHeadDim * s.Heads != s.Embedding)
            throw new BupoException($"random model: qwen2 needs head_dim x heads = embedding ({s.EffectiveHeadDim} x {s.Heads} != {s.Embedding})");
        if (s.EffectiveHeadDim % 2 != 0) throw new BupoException($"random model: head dim {s.EffectiveHeadDim} must be even (RoPE)");
        if (!GgmlQuantizer.Supports(s.TensorType)) throw new BupoException($"random model: tensor type {s.TensorType} is not one of F32, F16, BF16, Q8_0");
    }

    /// <summary>llama_ftype of a file whose 2-D weights are <paramref name="type"/>.</summary>
    public static uint FileType(GgmlType type) => GgufTypePolicy.FileType(type);

    /// <summary>Writes the model to <paramref name="path"/> (atomically), with the tokenizer of <paramref name="vocabGguf"/>.</summary>
    public static void Write(string path, RandomModelSpec spec, string vocabGguf)
    {
        using var vocab = GgufFile.Open(vocabGguf);
        Write(path, spec, vocab);
    }

    /// <summary>Writes the model to <paramref name="path"/> (atomically), with every tokenizer.* key of <paramref name="tokenizerSource"/>.</summary>
    public static void Write(string path, RandomModelSpec spec, GgufFile tokenizerSource)
    {
        var tokens = tokenizerSource.GetArray("tokenizer.ggml.tokens")
                     ?? throw new GgufFormatException($"{tokenizerSource.Path}: metadata 'tokenizer.ggml.tokens' is missing: not a vocab GGUF");
        var vocabSize = tokens.Count;
        var layout = LayoutWithInit(spec, vocabSize);
        var arch = spec.Architecture;
        var w = new GgufWriter()
            .SetString("general.architecture", arch)
            .SetString("general.type", "model")
            .SetString("general.name", spec.Name)
            .SetUInt32($"{arch}.block_count", (uint)spec.Layers)
            .SetUInt32($"{arch}.context_length", (uint)spec.ContextLength)
            .SetUInt32($"{arch}.embedding_length", (uint)spec.Embedding)
            .SetUInt32($"{arch}.feed_forward_length", (uint)spec.FeedForward)
            .SetUInt32($"{arch}.attention.head_count", (uint)spec.Heads)
            .SetUInt32($"{arch}.attention.head_count_kv", (uint)spec.KvHeads)
            .SetFloat32($"{arch}.rope.freq_base", spec.RopeBase)
            .SetFloat32($"{arch}.attention.layer_norm_rms_epsilon", spec.RmsEps)
            .SetUInt32($"{arch}.attention.key_length", (uint)spec.EffectiveHeadDim)
            .SetUInt32($"{arch}.attention.value_length", (uint)spec.EffectiveHeadDim)
            .SetUInt32($"{arch}.rope.dimension_count", (uint)spec.EffectiveHeadDim);
        if (arch == "llama") w.SetUInt32("llama.vocab_size", (uint)vocabSize);
        w.SetUInt32("general.file_type", FileType(spec.TensorType))
         .SetUInt32("general.quantization_version", 2)
         .Set("bupo.random.seed", GgufValue.Of(spec.Seed));
        foreach (var kv in tokenizerSource.Metadata)
            if (kv.Key.StartsWith("tokenizer.", StringComparison.Ordinal)) w.Set(kv.Key, kv.Value);

        var embStd = spec.EmbeddingStd ?? 1f / MathF.Sqrt(spec.Embedding);
        foreach (var (name, shape, init) in layout)
        {
            var type = shape.Length == 1 ? GgmlType.F32 : spec.TensorType;
            var (mean, std) = init switch
            {
                Init.Norm => (1f, spec.NormNoise),
                Init.Embedding => (0f, embStd),
                _ => (0f, spec.WeightStd),
            };
            w.AddTensor(name, shape, type, GgufTensorData.FromRows(Generator(spec.Seed, name, shape[0], mean, std)));
        }
        w.WriteTo(path);
    }

    /// <summary>Rows of N(mean, std)-like values, a pure function of (seed, tensor name, row).</summary>
    private static GgufRowSource Generator(ulong seed, string name, long cols, float mean, float std)
    {
        var tensorKey = SplitMix64.Hash(seed ^ Fnv1a(name));
        // sum of four uniform 16-bit integers: mean 4 * 32767.5, variance 4 * (65536^2 - 1) / 12
        const double center = 4 * 32767.5;
        var scale = std / Math.Sqrt(4 * (65536.0 * 65536.0 - 1) / 12);
        return (first, count, dst) =>
        {
            for (var r = 0; r < count; r++)
            {
                var state = SplitMix64.Hash(tensorKey + (ulong)(first + r) * 0xD1B54A32D192ED03UL);
                var row = dst.Slice((int)(r * cols), (int)cols);
                for (var j = 0; j < row.Length; j++)
                {
                    var z = SplitMix64.Next(ref state);
                    var sum = (long)(z & 0xFFFF) + (long)(z >> 16 & 0xFFFF) + (long)(z >> 32 & 0xFFFF) + (long)(z >> 48);
                    row[j] = mean + (float)((sum - center) * scale);
                }
            }
        };
    }


    private static ulong Fnv1a(string s)
    {
        var h = 0xCBF29CE484222325UL;
        foreach (var c in s) { h ^= c; h *= 0x100000001B3UL; }
        return h;
    }
}
