using BuPO.Hybrid.Gguf;

namespace BuPO.Hybrid.Tests.Support;

/// <summary>
/// Random-weight llama models with the generated 512-token SentencePiece vocabulary (<see cref="SpmVocab"/>):
/// what tests of llama.cpp and the rollout engine use instead of stories260K when they check a property that holds
/// for any model (layout, probes, batched == one at a time, round trips), so they run on a clone without ../shared.
/// </summary>
public static class RandomTestModels
{
    /// <summary>
    /// stories260K's shape with random weights: llama, 5 blocks, 64 wide, 8 heads over 4 KV heads, a 172-wide
    /// feed-forward (rows that are not whole Q8_0 blocks), an output matrix of its own, a 512-token context and vocabulary.
    /// </summary>
    public static RandomModelSpec StoriesShape { get; } = RandomModelSpec.Named("llama-tiny") with
    {
        Name = "random-stories-shape",
        Layers = 5,
        Heads = 8,
        KvHeads = 4,
        FeedForward = 172,
        TiedEmbeddings = false,
        ContextLength = 512,
    };

    /// <summary>Tokens of the generated SentencePiece vocabulary (BOS 1, EOS 2, byte tokens from 3).</summary>
    public const int VocabSize = 512;

    /// <summary>Writes (once per folder) the generated SentencePiece vocabulary and returns its path.</summary>
    public static string SpmVocab(string dir)
    {
        Directory.CreateDirectory(dir);
        return WriteSpmVocab(Path.Combine(dir, "spm-vocab-512.gguf"));
    }

    /// <summary>
    /// Writes (unless present) a small SentencePiece ("llama") vocabulary of 512 tokens: &lt;unk&gt;, &lt;s&gt;, &lt;/s&gt;, the 256 byte
    /// tokens, then characters, "▁"-prefixed letters and common English/math words. Returns <paramref name="path"/>.
    /// </summary>
    private static string WriteSpmVocab(string path)
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

    /// <summary>
    /// Writes (once per folder) a SentencePiece vocabulary of <paramref name="size"/> tokens, header only: the generated
    /// 512, then plain pieces "▁w&lt;id&gt;" with falling scores. As large as Qwen2's (151,936) by default, for what
    /// depends on the vocabulary's size only (large logits rows, a large GGUF header).
    /// </summary>
    public static string LargeSpmVocab(string dir, int size = 151_936)
    {
        var path = Path.Combine(dir, $"spm-vocab-{size}.gguf");
        if (File.Exists(path)) return path;
        using var small = GgufFile.Open(SpmVocab(dir));
        var tokens = ((string[])small.GetArray("tokenizer.ggml.tokens")!.Items).ToList();
        var scores = ((float[])small.GetArray("tokenizer.ggml.scores")!.Items).ToList();
        var types = ((int[])small.GetArray("tokenizer.ggml.token_type")!.Items).ToList();
        for (int id = tokens.Count; id < size; id++)
        {
            tokens.Add($"▁w{id}");
            scores.Add(-id);
            types.Add(1);
        }
        var w = new GgufWriter();
        foreach (var kv in small.Metadata) w.Set(kv.Key, kv.Value);
        w.Set("tokenizer.ggml.tokens", GgufValue.OfArray(tokens.ToArray()))
         .Set("tokenizer.ggml.scores", GgufValue.OfArray(scores.ToArray()))
         .Set("tokenizer.ggml.token_type", GgufValue.OfArray(types.ToArray()))
         .WriteTo(path);
        return path;
    }

    /// <summary>Writes (once per folder, spec and seed) a random model with the SentencePiece vocabulary and returns its path.</summary>
    /// <param name="vocabGguf">The vocabulary to copy; null = <see cref="SpmVocab"/>.</param>
    public static string Write(string dir, RandomModelSpec spec, ulong seed = 7, string? vocabGguf = null)
    {
        Directory.CreateDirectory(dir);
        vocabGguf ??= SpmVocab(dir);
        var path = Path.Combine(dir, $"{spec.Name}-{spec.TensorType.ToString().ToLowerInvariant()}-{seed}-{Path.GetFileNameWithoutExtension(vocabGguf)}.gguf");
        if (!File.Exists(path)) RandomGgufModel.Write(path, spec with { Seed = seed }, vocabGguf);
        return path;
    }

    /// <summary>A random model of stories260K's shape (<see cref="StoriesShape"/>).</summary>
    public static string StoriesShaped(string dir, ulong seed = 7) => Write(dir, StoriesShape, seed);
}
