using System.Globalization;
using BuPO.Hybrid.Gguf;

namespace BuPO.Hybrid.Model;

/// <summary>How RoPE pairs the dimensions of a head (ggml's rope modes).</summary>
public enum RopeStyle
{
    /// <summary>ggml NORM (mode 0): adjacent pairs (x[2i], x[2i+1]). llama GGUFs store Q/K permuted for it.</summary>
    Norm,
    /// <summary>ggml NEOX (mode 2): halves (x[i], x[i+d/2]). qwen2, qwen3.</summary>
    Neox,
}

/// <summary>
/// Hyper-parameters of a pre-norm decoder (llama, qwen2, qwen3) as llama.cpp reads them from GGUF metadata
/// (src/llama-model.cpp of the pinned release): same keys, same defaults.
/// </summary>
public sealed record TransformerConfig
{
    /// <summary>Architectures this trainer implements.</summary>
    public static readonly IReadOnlyList<string> SupportedArchitectures = ["llama", "qwen2", "qwen3"];

    public required string Architecture { get; init; }
    public required int LayerCount { get; init; }
    public required int EmbeddingLength { get; init; }
    public required int HeadCount { get; init; }
    public required int HeadCountKv { get; init; }
    /// <summary>Per-head dimension of Q and K (key_length, else n_embd / n_head).</summary>
    public required int HeadDim { get; init; }
    /// <summary>Per-head dimension of V (value_length, else n_embd / n_head).</summary>
    public required int HeadDimV { get; init; }
    public required int FeedForwardLength { get; init; }
    public required int VocabSize { get; init; }
    /// <summary>rope.freq_base (default 10000).</summary>
    public double RopeFreqBase { get; init; } = 10000.0;
    /// <summary>1 / rope.scaling.factor (linear scaling), 1 when absent.</summary>
    public double RopeFreqScale { get; init; } = 1.0;
    public required double RmsEps { get; init; }
    /// <summary>True when the file has no output.weight: the unembedding is token_embd.weight.</summary>
    public required bool TiedEmbeddings { get; init; }
    /// <summary>Q/K/V carry biases (qwen2).</summary>
    public bool QkvBias { get; init; }
    /// <summary>Per-head RMSNorm of Q and K before RoPE (qwen3).</summary>
    public bool QkNorm { get; init; }
    public required RopeStyle Rope { get; init; }
    /// <summary>The file has rope_freqs.weight (llama3-style per-frequency divisors).</summary>
    public bool HasRopeFreqFactors { get; init; }
    /// <summary>Attention logit scale: 1/sqrt(head_dim) for these architectures.</summary>
    public double AttentionScale => 1.0 / Math.Sqrt(HeadDim);
    public int GqaGroup => HeadCount / HeadCountKv;

    /// <summary>Reads the config of an open GGUF file.</summary>
    /// <exception cref="BupoException">Unsupported architecture or inconsistent metadata.</exception>
    public static TransformerConfig FromGguf(GgufFile file)
    {
        var arch = file.Architecture ?? throw new BupoException($"{file.Path}: general.architecture is missing: not a model GGUF");
        if (!SupportedArchitectures.Contains(arch))
            throw new BupoException($"{file.Path}: architecture '{arch}' is not supported by the trainer (supported: {string.Join(", ", SupportedArchitectures)})");
        GgufModelValidator.Validate(file);

        int Req(string key) => Int(file, $"{arch}.{key}") ?? throw new BupoException($"{file.Path}: metadata '{arch}.{key}' is missing");
        var nLayer = Req("block_count");
        var nEmbd = Req("embedding_length");
        var nHead = Req("attention.head_count");
        var nHeadKv = Int(file, $"{arch}.attention.head_count_kv") ?? nHead;
        var nFf = Req("feed_forward_length");
        if (nLayer <= 0 || nEmbd <= 0 || nHead <= 0 || nHeadKv <= 0 || nFf <= 0)
            throw new BupoException($"{file.Path}: non-positive dimension in metadata (block_count {nLayer}, embedding_length {nEmbd}, head_count {nHead}, head_count_kv {nHeadKv}, feed_forward_length {nFf})");
        if (nHead % nHeadKv != 0) throw new BupoException($"{file.Path}: head_count {nHead} is not a multiple of head_count_kv {nHeadKv}");
        var headDim = Int(file, $"{arch}.attention.key_length") ?? nEmbd / nHead;
        var headDimV = Int(file, $"{arch}.attention.value_length") ?? nEmbd / nHead;
        if (headDim != headDimV) throw new BupoException($"{file.Path}: key_length {headDim} differs from value_length {headDimV} (not supported)");
        var nRot = Int(file, $"{arch}.rope.dimension_count") ?? headDim;
        if (nRot != headDim) throw new BupoException($"{file.Path}: partial rotary embeddings (rope.dimension_count {nRot} < head dim {headDim}) are not supported");
        if (headDim % 2 != 0) throw new BupoException($"{file.Path}: odd head dimension {headDim}");

        var eps = file.GetFloat($"{arch}.attention.layer_norm_rms_epsilon") ?? throw new BupoException($"{file.Path}: metadata '{arch}.attention.layer_norm_rms_epsilon' is missing");
        var freqBase = file.GetFloat($"{arch}.rope.freq_base") ?? 10000.0;
        var scalingType = file.GetString($"{arch}.rope.scaling.type") ?? "linear";
        var factor = file.GetFloat($"{arch}.rope.scaling.factor") ?? file.GetFloat($"{arch}.rope.scale_linear") ?? 0.0;
        if (scalingType is not ("linear" or "none") && factor != 0.0 && factor != 1.0)
            throw new BupoException($"{file.Path}: rope scaling '{scalingType}' (factor {factor.ToString(CultureInfo.InvariantCulture)}) is not supported by the trainer; only linear scaling is");
        var freqScale = factor == 0.0 || scalingType == "none" ? 1.0 : 1.0 / factor;

        var embd = file.FindTensor("token_embd.weight") ?? throw new BupoException($"{file.Path}: tensor 'token_embd.weight' is missing");
        if (embd.Shape.Length != 2 || embd.Shape[0] != nEmbd)
            throw new BupoException($"{file.Path}: token_embd.weight has shape [{string.Join(", ", embd.Shape)}], expected [{nEmbd}, n_vocab]");
        var vocab = checked((int)embd.Shape[1]);

        return new TransformerConfig
        {
            Architecture = arch,
            LayerCount = nLayer,
            EmbeddingLength = nEmbd,
            HeadCount = nHead,
            HeadCountKv = nHeadKv,
            HeadDim = headDim,
            HeadDimV = headDimV,
            FeedForwardLength = nFf,
            VocabSize = vocab,
            RopeFreqBase = freqBase,
            RopeFreqScale = freqScale,
            RmsEps = eps,
            TiedEmbeddings = file.FindTensor("output.weight") is null,
            QkvBias = file.FindTensor("blk.0.attn_q.bias") is not null || file.FindTensor("blk.0.attn_qkv.bias") is not null,
            QkNorm = file.FindTensor("blk.0.attn_q_norm.weight") is not null,
            Rope = arch == "llama" ? RopeStyle.Norm : RopeStyle.Neox,
            HasRopeFreqFactors = file.FindTensor("rope_freqs.weight") is not null,
        };
    }

    /// <summary>Reads the config of a GGUF file by path.</summary>
    public static TransformerConfig FromGguf(string path)
    {
        using var file = GgufFile.Open(path);
        return FromGguf(file);
    }

    private static int? Int(GgufFile file, string key)
    {
        var v = file.Get(key);
        if (v is null) return null;
        if (v.Value is GgufArray arr)
        {
            // Per-layer arrays (llama.cpp's get_key_or_arr): accepted when every layer has the same value.
            var values = arr.Items.Cast<object>().Select(o => Convert.ToInt64(o, CultureInfo.InvariantCulture)).Distinct().ToArray();
            if (values.Length != 1) throw new BupoException($"{file.Path}: metadata '{key}' differs between layers (not supported)");
            return checked((int)values[0]);
        }
        return checked((int)(file.GetInt(key) ?? 0));
    }

    public override string ToString() =>
        $"{Architecture}: {LayerCount} blocks, d={EmbeddingLength}, heads {HeadCount}/{HeadCountKv}x{HeadDim}, ff {FeedForwardLength}, vocab {VocabSize}, " +
        $"rope {Rope} base {RopeFreqBase.ToString(CultureInfo.InvariantCulture)}, eps {RmsEps.ToString(CultureInfo.InvariantCulture)}" +
        (TiedEmbeddings ? ", tied" : "") + (QkvBias ? ", qkv bias" : "") + (QkNorm ? ", q/k norm" : "");
}
