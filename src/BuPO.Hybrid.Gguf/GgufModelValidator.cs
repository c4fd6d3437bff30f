using System.Globalization;
using System.Text.RegularExpressions;

namespace BuPO.Hybrid.Gguf;

/// <summary>What a GGUF is loaded for: the whole model, or its tokenizer only (llama.cpp's vocab_only).</summary>
public enum GgufLoadScope { Model, VocabOnly }

/// <summary>
/// Our own check of a model GGUF's metadata against itself and its tensors, run before llama.cpp or TorchSharp sees the
/// file: llama.cpp aborts the process (GGML_ASSERT) on some values (block_count 0 or above its 512, an expert count above
/// 512 or below the experts used) and allocates by others before it checks them. Here every count is an integer of a
/// sane range, the layer count matches the <c>blk.N</c> tensors present, the dimensions match the embedding tensor, the
/// vocabulary arrays agree in length with each other and with the embedding's rows, and no value overflows a 32-bit
/// field. The first problem is a <see cref="GgufFormatException"/> naming the file and the key.
/// </summary>
public static partial class GgufModelValidator
{
    /// <summary>Architectures whose llama.cpp graph rotates whole heads of equal key and value width.</summary>
    private static readonly HashSet<string> FullRotaryArchitectures = new(StringComparer.Ordinal) { "llama", "qwen2", "qwen3" };

    /// <summary>llama.cpp's LLAMA_MAX_LAYERS.</summary>
    public const int MaxLayers = 512;
    /// <summary>llama.cpp's LLAMA_MAX_EXPERTS (v0.5.0).</summary>
    public const int MaxExperts = 512;

    /// <summary>Opens and checks <paramref name="path"/>.</summary>
    /// <exception cref="GgufFormatException">Malformed file or inconsistent metadata.</exception>
    public static void Validate(string path, GgufLoadScope scope = GgufLoadScope.Model)
    {
        using var file = GgufFile.OpenMapped(path); // the header only: no copy of the file
        Validate(file, scope);
    }

    /// <summary>Checks an open file.</summary>
    /// <exception cref="GgufFormatException">Inconsistent metadata.</exception>
    public static void Validate(GgufFile file, GgufLoadScope scope = GgufLoadScope.Model)
    {
        var arch = Str(file, "general.architecture") ?? throw Fail(file, "metadata 'general.architecture' is missing: not a model GGUF");
        if (arch.Length == 0 || arch.Length > 64) throw Fail(file, $"general.architecture '{Clip(arch)}' is not an architecture name");
        var vocab = ValidateTokenizer(file);
        if (scope == GgufLoadScope.VocabOnly) return;

        // Layers: the count and the blk.N tensors must agree.
        var layers = (int)Count(file, $"{arch}.block_count", 1, MaxLayers, required: true)!.Value;
        var maxBlock = -1;
        var seen = new bool[MaxLayers];
        foreach (var t in file.Tensors)
        {
            var m = BlockName().Match(t.Name);
            if (!m.Success) continue;
            if (!int.TryParse(m.Groups[1].ValueSpan, NumberStyles.None, CultureInfo.InvariantCulture, out var b) || b >= MaxLayers)
                throw Fail(file, $"tensor '{t.Name}' names block {m.Groups[1].Value}, beyond the {MaxLayers} blocks llama.cpp supports");
            seen[b] = true;
            maxBlock = Math.Max(maxBlock, b);
        }
        if (file.Tensors.Count > 0)
        {
            if (maxBlock + 1 != layers)
                throw Fail(file, $"{arch}.block_count is {layers}, but the file holds tensors of {maxBlock + 1} blocks (blk.0 .. blk.{maxBlock})");
            for (var b = 0; b < layers; b++)
                if (!seen[b]) throw Fail(file, $"{arch}.block_count is {layers}, but block {b} has no tensors");
        }

        // Dimensions (scalars or per-layer arrays of block_count values).
        var embd = Count(file, $"{arch}.embedding_length", 1, int.MaxValue, required: true)!.Value;
        PerLayer(file, $"{arch}.feed_forward_length", layers, 0);
        var heads = PerLayer(file, $"{arch}.attention.head_count", layers, 0);
        var kvHeads = PerLayer(file, $"{arch}.attention.head_count_kv", layers, 0);
        if (heads is { } h && kvHeads is { } kv && kv > 0 && h % kv != 0)
            throw Fail(file, $"{arch}.attention.head_count {h} is not a multiple of head_count_kv {kv}");
        foreach (var key in new[] { "context_length", "vocab_size", "attention.sliding_window" })
            Count(file, $"{arch}.{key}", 0, int.MaxValue, required: false);
        var keyLength = Count(file, $"{arch}.attention.key_length", 1, int.MaxValue, required: false);
        var valueLength = Count(file, $"{arch}.attention.value_length", 1, int.MaxValue, required: false);
        var rot = Count(file, $"{arch}.rope.dimension_count", 0, int.MaxValue, required: false);
        if (FullRotaryArchitectures.Contains(arch) && heads is > 0)
        {
            // llama.cpp's graphs of these architectures assert head dim == value head dim == rotary dims (a native abort).
            if (keyLength is null && embd % heads.Value != 0)
                throw Fail(file, $"{arch}.embedding_length {embd} is not a multiple of head_count {heads} (and attention.key_length is not given)");
            var headDim = keyLength ?? embd / heads.Value;
            if ((valueLength ?? headDim) != headDim)
                throw Fail(file, $"{arch}.attention.value_length {valueLength} differs from the head dimension {headDim}");
            if ((rot ?? headDim) != headDim)
                throw Fail(file, $"{arch}.rope.dimension_count {rot} differs from the head dimension {headDim} ({arch} rotates whole heads)");
        }
        var experts = Count(file, $"{arch}.expert_count", 0, MaxExperts, required: false) ?? 0;
        var used = Count(file, $"{arch}.expert_used_count", 0, MaxExperts, required: false) ?? 0;
        if (used > experts) throw Fail(file, $"{arch}.expert_used_count {used} is more than expert_count {experts}");
        if (experts > 0 && used == 0) throw Fail(file, $"{arch}.expert_count is {experts}, but expert_used_count is {(file.Has($"{arch}.expert_used_count") ? "0" : "missing")}");
        foreach (var key in new[] { "attention.layer_norm_rms_epsilon", "attention.layer_norm_epsilon" })
            if (Num(file, $"{arch}.{key}") is { } eps && !(eps > 0 && eps < 1))
                throw Fail(file, $"{arch}.{key} is {eps.ToString(CultureInfo.InvariantCulture)}, expected a small positive number");
        if (Num(file, $"{arch}.rope.freq_base") is { } fb && !(fb > 0 && double.IsFinite(fb)))
            throw Fail(file, $"{arch}.rope.freq_base is {fb.ToString(CultureInfo.InvariantCulture)}, expected a positive number");

        // The embedding tensor fixes the width and the vocabulary.
        if (file.FindTensor("token_embd.weight") is { } te)
        {
            if (te.Shape.Length != 2 || te.Shape[0] != embd)
                throw Fail(file, $"token_embd.weight has shape [{string.Join(", ", te.Shape)}], but {arch}.embedding_length is {embd}");
            if (vocab is { } n && te.Shape[1] != n)
                throw Fail(file, $"token_embd.weight has {te.Shape[1]} rows, but tokenizer.ggml.tokens has {n} tokens");
        }
        if (file.FindTensor("output.weight") is { } ow && vocab is { } nv && (ow.Shape.Length != 2 || ow.Shape[0] != embd || ow.Shape[1] != nv))
            throw Fail(file, $"output.weight has shape [{string.Join(", ", ow.Shape)}], expected [{embd}, {nv}]");
    }

    /// <summary>The tokenizer arrays: strings, equal lengths, ids inside the vocabulary (or llama.cpp's "none", -1). Returns the vocabulary size, or null without a tokenizer.</summary>
    private static int? ValidateTokenizer(GgufFile file)
    {
        int? n = null;
        if (file.Get("tokenizer.ggml.tokens") is { } tokens)
        {
            if (tokens.Value is not GgufArray { ElementType: GgufValueType.String } arr) throw Fail(file, "tokenizer.ggml.tokens is not an array of strings");
            if (arr.Count == 0) throw Fail(file, "tokenizer.ggml.tokens is empty");
            n = arr.Count;
        }
        foreach (var key in new[] { "tokenizer.ggml.scores", "tokenizer.ggml.token_type" })
        {
            if (file.Get(key) is not { } v) continue;
            if (v.Value is not GgufArray arr || arr.ElementType is GgufValueType.String or GgufValueType.Array)
                throw Fail(file, $"{key} is not an array of numbers");
            if (n is { } count && arr.Count != count) throw Fail(file, $"{key} has {arr.Count} entries, tokenizer.ggml.tokens {count}");
        }
        if (file.Get("tokenizer.ggml.merges") is { } merges && merges.Value is not GgufArray { ElementType: GgufValueType.String })
            throw Fail(file, "tokenizer.ggml.merges is not an array of strings");
        if (file.Get("tokenizer.ggml.model") is { } model && model.Value is not string)
            throw Fail(file, "tokenizer.ggml.model is not a string");
        foreach (var kv in file.Metadata)
        {
            if (!kv.Key.StartsWith("tokenizer.ggml.", StringComparison.Ordinal) || !kv.Key.EndsWith("_token_id", StringComparison.Ordinal)) continue;
            var id = Integer(file, kv.Key, kv.Value);
            // llama.cpp reads ids as u32 and treats values outside the vocabulary as "none" with a warning.
            if (id < -1 || id > uint.MaxValue) throw Fail(file, $"{kv.Key} is {id}, outside the 32-bit token ids");
        }
        return n;
    }

    /// <summary>An integer key in [min, max]; null when absent and not required.</summary>
    private static long? Count(GgufFile file, string key, long min, long max, bool required)
    {
        var v = file.Get(key);
        if (v is null) return required ? throw Fail(file, $"metadata '{key}' is missing") : null;
        var x = Integer(file, key, v);
        if (x < min || x > max) throw Fail(file, $"{key} is {x}, expected {min}..{max}");
        return x;
    }

    /// <summary>A per-layer key: an integer, or an array of <paramref name="layers"/> integers (llama.cpp's get_key_or_arr). Returns layer 0's value.</summary>
    private static long? PerLayer(GgufFile file, string key, int layers, long min)
    {
        var v = file.Get(key);
        if (v is null) return null;
        if (v.Value is GgufArray arr)
        {
            if (arr.ElementType is GgufValueType.String or GgufValueType.Array or GgufValueType.Float32 or GgufValueType.Float64)
                throw Fail(file, $"{key} is an array of {arr.ElementType}, expected integers");
            if (arr.Count != layers) throw Fail(file, $"{key} has {arr.Count} values for {layers} blocks");
            long first = 0;
            for (var i = 0; i < arr.Count; i++)
            {
                var x = Convert.ToDecimal(arr.Items.GetValue(i), CultureInfo.InvariantCulture);
                if (x < min || x > int.MaxValue) throw Fail(file, $"{key}[{i}] is {x}, expected {min}..{int.MaxValue}");
                if (i == 0) first = (long)x;
            }
            return first;
        }
        var s = Integer(file, key, v);
        if (s < min || s > int.MaxValue) throw Fail(file, $"{key} is {s}, expected {min}..{int.MaxValue}");
        return s;
    }

    private static long Integer(GgufFile file, string key, GgufValue v) => v.AsInt64OrNull()
        ?? throw Fail(file, v.Value is ulong x ? $"{key} is {x}, far outside any count" : $"{key} is a {v.Type}, expected an integer");

    private static double? Num(GgufFile file, string key)
    {
        var v = file.Get(key);
        if (v is null) return null;
        return v.Value switch
        {
            float f => f,
            double d => d,
            string or GgufArray or bool => throw Fail(file, $"{key} is a {v.Type}, expected a number"),
            _ => Integer(file, key, v),
        };
    }

    private static string? Str(GgufFile file, string key)
    {
        var v = file.Get(key);
        if (v is null) return null;
        return v.Value as string ?? throw Fail(file, $"{key} is a {v.Type}, expected a string");
    }

    private static string Clip(string s) => s.Length <= 40 ? s : s[..40] + "...";

    private static GgufFormatException Fail(GgufFile file, string message) => new($"{file.Path}: {message}");

    [GeneratedRegex(@"^blk\.(\d{1,9})\.", RegexOptions.CultureInvariant)]
    private static partial Regex BlockName();
}
