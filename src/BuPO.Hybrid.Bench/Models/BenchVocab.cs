using System.Text;
using System.Text.RegularExpressions;
using BuPO.Hybrid.Bench.Text;
using BuPO.Hybrid.Tokenizers;

namespace BuPO.Hybrid.Bench.Models;

/// <summary>
/// A small generated vocabulary for benchmarks on a fresh clone (no ../shared): a byte-level BPE in the GPT-2/Qwen2
/// format (<c>tokenizer.ggml.model = gpt2</c>, <c>pre = qwen2</c>): the 256 byte tokens, merges learned greedily from
/// <see cref="BenchText.Generated"/> text, and Qwen's three special tokens. Both llama.cpp and the managed tokenizer load
/// it. Its size (a few hundred tokens) is far from Qwen's 151,936, so unembedding costs measured with it are not
/// representative: the bench output says which vocabulary was used.
/// </summary>
public static class BenchVocab
{
    /// <summary>Bumped whenever the generated vocabulary changes (part of the cache file names).</summary>
    public const int Version = 1;
    public const int DefaultMerges = 512;

    /// <summary>Writes the vocabulary (a GGUF with metadata only) to <paramref name="path"/>, atomically.</summary>
    public static void Write(string path, int merges = DefaultMerges)
    {
        var (tokens, mergeList) = Train(BenchText.Generated(400, seed: 7), merges);
        ByteLevelBpeVocabulary.Write(path, tokens, mergeList, ByteLevelBpeVocabulary.QwenSpecials, $"bupo-bench-generated-bpe-v{Version}");
    }

    /// <summary>Byte tokens (GPT-2's byte-to-unicode spelling) plus one token per learned merge, and the merges.</summary>
    public static (List<string> Tokens, List<string> Merges) Train(IEnumerable<string> corpus, int merges)
    {
        var byteText = ByteLevelBpeVocabulary.ByteSymbols;
        var tokens = Enumerable.Range(0, 256).Select(b => byteText[b]).ToList();
        var known = new HashSet<string>(tokens, StringComparer.Ordinal);
        // Word counts after Qwen2's pre-tokenizer; each word as a list of symbols.
        var words = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var line in corpus)
            foreach (Match m in PreTokenizer.Matches(line))
            {
                var mapped = string.Concat(Encoding.UTF8.GetBytes(m.Value).Select(b => byteText[b]));
                words[mapped] = words.GetValueOrDefault(mapped) + 1;
            }
        var split = words.Select(kv => (Symbols: kv.Key.Select(c => c.ToString()).ToList(), Count: kv.Value)).ToList();
        var mergeList = new List<string>();
        while (mergeList.Count < merges)
        {
            var pairs = new Dictionary<(string, string), int>();
            foreach (var (symbols, count) in split)
                for (var i = 0; i + 1 < symbols.Count; i++)
                    pairs[(symbols[i], symbols[i + 1])] = pairs.GetValueOrDefault((symbols[i], symbols[i + 1])) + count;
            if (pairs.Count == 0) break;
            // Most frequent pair; ties broken by the pair's text so the result is deterministic.
            var best = pairs.OrderByDescending(p => p.Value).ThenBy(p => p.Key.Item1, StringComparer.Ordinal).ThenBy(p => p.Key.Item2, StringComparer.Ordinal).First();
            if (best.Value < 2) break;
            var (a, b) = best.Key;
            var merged = a + b;
            mergeList.Add(a + " " + b);
            if (known.Add(merged)) tokens.Add(merged);
            foreach (var (symbols, _) in split)
                for (var i = 0; i + 1 < symbols.Count; i++)
                    if (symbols[i] == a && symbols[i + 1] == b)
                    {
                        symbols[i] = merged;
                        symbols.RemoveAt(i + 1);
                    }
        }
        return (tokens, mergeList);
    }

    // Qwen2's pre-tokenizer expression (llama.cpp's llm_tokenizer_bpe), for splitting the training text into words.
    private static readonly Regex PreTokenizer = new(
        "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        RegexOptions.Compiled | RegexOptions.CultureInvariant);
}
