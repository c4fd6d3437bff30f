using System.Text;
using BuPO.Hybrid.Gguf;

namespace BuPO.Hybrid.Tokenizers.Tests;

/// <summary>
/// Small vocabularies written by the tests (no ../shared needed): a byte-level BPE (gpt2 / qwen2 pre-tokenizer) whose
/// merges are drawn at random from pairs that occur in <see cref="Texts"/>, and a SentencePiece one with random pieces
/// and scores plus the 256 byte tokens. llama.cpp and the managed tokenizer both load them.
/// </summary>
internal static class GeneratedVocabularies
{
    private static readonly string[] Words =
    [
        "the", "a", "apples", "Janet", "sells", "eggs", "for", "$2", "each", "how", "many", "does", "she", "make", "per", "day",
        "x", "y", "=", "+", "-", "\\frac{1}{2}", "\\boxed{42}", "$", "(", ")", "3.14", "1,234", "don't", "it's", "we'll",
        "κόσμε", "日本語", "🦙", "\n", "\n\n", "  ", "\t", "Total:", "answer", "is", "####", "72", "2024", "x^2", "√",
    ];

    /// <summary>Texts made of <see cref="Words"/> (GSM8K / MATH-like: digits, LaTeX, unicode, whitespace runs).</summary>
    public static IReadOnlyList<string> Texts(int count, int seed)
    {
        var rng = new Random(seed);
        var texts = new List<string>(count);
        for (var i = 0; i < count; i++)
        {
            var sb = new StringBuilder();
            var n = rng.Next(1, 40);
            for (var w = 0; w < n; w++)
            {
                if (w > 0 && rng.Next(4) != 0) sb.Append(' ');
                sb.Append(Words[rng.Next(Words.Length)]);
            }
            texts.Add(sb.ToString());
        }
        return texts;
    }

    /// <summary>Writes a byte-level BPE vocabulary (tokenizer.ggml.model gpt2, pre qwen2) with <paramref name="merges"/> random merges.</summary>
    public static void WriteBpe(string path, int merges = 300, int seed = 11)
    {
        var byteText = ByteLevelBpeVocabulary.ByteSymbols;
        var tokens = Enumerable.Range(0, 256).Select(b => byteText[b]).ToList();
        var known = new HashSet<string>(tokens, StringComparer.Ordinal);
        var words = Texts(200, seed).SelectMany(t => t.Split(' ').Select((w, i) => i == 0 ? w : " " + w))
            .Where(w => w.Length > 0)
            .Select(w => Encoding.UTF8.GetBytes(w).Select(b => byteText[b]).ToList())
            .ToList();
        var rng = new Random(seed);
        var mergeList = new List<string>();
        for (var attempt = 0; mergeList.Count < merges && attempt < merges * 20; attempt++)
        {
            var word = words[rng.Next(words.Count)];
            if (word.Count < 2) continue;
            var i = rng.Next(word.Count - 1);
            var (a, b) = (word[i], word[i + 1]);
            var merge = a + " " + b;
            if (mergeList.Contains(merge)) continue;
            mergeList.Add(merge);
            if (known.Add(a + b)) tokens.Add(a + b);
            foreach (var w in words)
                for (var k = 0; k + 1 < w.Count; k++)
                    if (w[k] == a && w[k + 1] == b) { w[k] = a + b; w.RemoveAt(k + 1); }
        }
        ByteLevelBpeVocabulary.Write(path, tokens, mergeList, ByteLevelBpeVocabulary.QwenSpecials);
    }

    /// <summary>Writes a SentencePiece vocabulary (tokenizer.ggml.model llama): specials, byte tokens, random pieces with random scores.</summary>
    public static void WriteSpm(string path, int pieces = 400, int seed = 13)
    {
        var rng = new Random(seed);
        var tokens = new List<string> { "<unk>", "<s>", "</s>" };
        var types = new List<int> { 2, 3, 3 };
        for (var b = 0; b < 256; b++) { tokens.Add($"<0x{b:X2}>"); types.Add(6); }
        var known = new HashSet<string>(tokens, StringComparer.Ordinal);
        var escaped = Texts(200, seed).Select(t => "\u2581" + t.Replace(' ', '\u2581')).ToList();
        foreach (var c in escaped.SelectMany(t => t).Where(c => !char.IsSurrogate(c)).Distinct())
            if (known.Add(c.ToString())) { tokens.Add(c.ToString()); types.Add(1); }
        for (var attempt = 0; tokens.Count < 259 + pieces && attempt < pieces * 20; attempt++)
        {
            var t = escaped[rng.Next(escaped.Count)];
            var start = rng.Next(t.Length);
            var len = Math.Min(rng.Next(2, 7), t.Length - start);
            if (len < 2) continue;
            if (char.IsLowSurrogate(t[start]) || char.IsHighSurrogate(t[start + len - 1])) continue;
            var piece = t.Substring(start, len);
            if (known.Add(piece)) { tokens.Add(piece); types.Add(1); }
        }
        var scores = tokens.Select((_, i) => i < 259 ? 0f : -(float)rng.NextDouble() * 10).ToArray();
        new GgufWriter()
            .SetString("general.architecture", "llama")
            .SetString("general.type", "vocab")
            .SetString("tokenizer.ggml.model", "llama")
            .Set("tokenizer.ggml.tokens", GgufValue.OfArray(tokens.ToArray()))
            .Set("tokenizer.ggml.scores", GgufValue.OfArray(scores))
            .Set("tokenizer.ggml.token_type", GgufValue.OfArray(types.ToArray()))
            .SetUInt32("tokenizer.ggml.unknown_token_id", 0)
            .SetUInt32("tokenizer.ggml.bos_token_id", 1)
            .SetUInt32("tokenizer.ggml.eos_token_id", 2)
            .WriteTo(path);
    }
}
