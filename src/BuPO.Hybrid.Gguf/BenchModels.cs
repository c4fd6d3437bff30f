namespace BuPO.Hybrid.Gguf;

/// <summary>
/// Random-weight GGUF models for benchmarks and tests, written once into a cache folder. The tokenizer comes from
/// ../shared/models/vocab/ggml-vocab-qwen2.gguf when present (the real Qwen2/Qwen3 vocabulary), otherwise from a small
/// generated SentencePiece-style vocabulary (<see cref="WriteTinyVocab"/>), so this works on a fresh clone.
/// </summary>
public static class BenchModels
{
    /// <summary>The default cache folder: &lt;temp&gt;/bupo-hybrid/random-models.</summary>
    public static string DefaultCacheDir => Path.Combine(Path.GetTempPath(), "bupo-hybrid", "random-models");

    /// <summary>
    /// The path of a random model of the named shape (<see cref="RandomModelSpec.NamedShapes"/>), written on first use.
    /// </summary>
    /// <param name="shape">qwen3-0.6b, qwen3-tiny, qwen2-tiny, llama-tiny.</param>
    /// <param name="cacheDir">Folder for the file; null = <see cref="DefaultCacheDir"/>.</param>
    /// <param name="vocabGguf">A vocab GGUF to copy the tokenizer from; null = the shared Qwen2 vocab, else a generated one.</param>
    /// <param name="type">Type of the 2-D weights (F32, F16, BF16, Q8_0).</param>
    public static string RandomModel(string shape, string? cacheDir = null, string? vocabGguf = null, GgmlType type = GgmlType.F32)
    {
        var spec = RandomModelSpec.Named(shape) with { TensorType = type };
        cacheDir ??= DefaultCacheDir;
        Directory.CreateDirectory(cacheDir);
        vocabGguf ??= FindSharedQwen2Vocab() ?? WriteTinyVocab(Path.Combine(cacheDir, "tiny-vocab-v1.gguf"));
        if (!File.Exists(vocabGguf)) throw new BupoException($"vocab file not found: {vocabGguf}");
        var vocabTag = Path.GetFileNameWithoutExtension(vocabGguf);
        var path = Path.Combine(cacheDir, $"random-{shape.ToLowerInvariant()}-{type.ToString().ToLowerInvariant()}-{vocabTag}-{new FileInfo(vocabGguf).Length}.gguf");
        if (!File.Exists(path)) RandomGgufModel.Write(path, spec, vocabGguf);
        return path;
    }

    /// <summary>../shared/models/vocab/ggml-vocab-qwen2.gguf beside the repository (or under BUPO_SHARED_DIR), or null.</summary>
    public static string? FindSharedQwen2Vocab() => Data.SharedFolder.FindFile("models", "vocab", "ggml-vocab-qwen2.gguf");

    /// <summary>
    /// Writes (unless present) a small SentencePiece ("llama") vocabulary of 512 tokens: &lt;unk&gt;, &lt;s&gt;, &lt;/s&gt;, the 256 byte
    /// tokens, then characters, "▁"-prefixed letters and common English/math words. Returns <paramref name="path"/>.
    /// </summary>
    public static string WriteTinyVocab(string path)
    {
        if (File.Exists(path)) return path;
        var tokens = new List<string> { "<unk>", "<s>", "</s>" };
        var types = new List<int> { 2, 3, 3 };
        for (int b = 0; b < 256; b++) { tokens.Add($"<0x{b:X2}>"); types.Add(6); }
        var pieces = new List<string> { "▁" };
        foreach (var c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"()[]{}+-*/=<>^_\\$%&|#@~") pieces.Add(c.ToString());
        foreach (var c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") pieces.Add("▁" + c);
        foreach (var w in new[]
                 {
                     "the", "and", "to", "of", "is", "in", "that", "it", "was", "for", "on", "are", "with", "as", "be", "at", "this", "have",
                     "from", "or", "one", "had", "by", "but", "not", "what", "all", "were", "we", "when", "your", "can", "said", "there",
                     "use", "an", "each", "which", "she", "do", "how", "their", "if", "will", "up", "other", "about", "out", "many", "then",
                     "them", "these", "so", "some", "her", "would", "make", "like", "him", "into", "time", "has", "look", "two", "more",
                     "answer", "number", "sum", "find", "let", "so", "step", "final", "boxed", "please", "reason", "put", "within", "value",
                     "total", "equal", "equals", "therefore", "thus", "problem", "solve", "first", "second", "then", "add", "minus", "times",
                 })
        {
            pieces.Add("▁" + w);
            pieces.Add(w);
        }
        pieces.AddRange(["\\boxed", "{", "}", "ing", "ed", "er", "es", "th", "he", "an", "re", "on", "at", "en", "nd", "st", "or", "es"]);
        var seen = new HashSet<string>(tokens);
        foreach (var piece in pieces)
        {
            if (tokens.Count >= 512) break;
            if (!seen.Add(piece)) continue;
            tokens.Add(piece);
            types.Add(1);
        }
        for (int i = 0; tokens.Count < 512; i++) { tokens.Add($"<extra_{i}>"); types.Add(4); }   // user-defined fillers
        var scores = new float[tokens.Count];
        for (int i = 0; i < scores.Length; i++) scores[i] = types[i] == 1 ? -i : 0f;
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
        new GgufWriter()
            .SetString("general.architecture", "llama")
            .SetString("general.type", "vocab")
            .SetString("general.name", "bupo-tiny-vocab")
            .SetString("tokenizer.ggml.model", "llama")
            .Set("tokenizer.ggml.tokens", GgufValue.OfArray(tokens.ToArray()))
            .Set("tokenizer.ggml.scores", GgufValue.OfArray(scores))
            .Set("tokenizer.ggml.token_type", GgufValue.OfArray(types.ToArray()))
            .SetUInt32("tokenizer.ggml.bos_token_id", 1)
            .SetUInt32("tokenizer.ggml.eos_token_id", 2)
            .SetUInt32("tokenizer.ggml.unknown_token_id", 0)
            .SetBool("tokenizer.ggml.add_bos_token", true)
            .SetBool("tokenizer.ggml.add_eos_token", false)
            .WriteTo(path);
        return path;
    }
}
