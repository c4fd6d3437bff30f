using System.Text.Json;
using BuPO.Hybrid.Tests.Support;

namespace BuPO.Hybrid.Tokenizers.Tests;

/// <summary>Texts the tokenizer tests compare on.</summary>
internal static class TokenizerCorpus
{
    /// <summary>
    /// 2,000 texts: the question and answer of the first 500 GSM8K test records and the problem and solution of
    /// the 500 MATH500 records (LaTeX, digits, unicode, multi-line). Skips the test when the data is absent.
    /// </summary>
    public static IReadOnlyList<string> MathLines()
    {
        var texts = new List<string>(2000);
        foreach (var line in File.ReadLines(SharedAssets.RequireFile(SharedAssets.DataFile("gsm8k", "test"))).Take(500))
        {
            var d = JsonDocument.Parse(line).RootElement;
            texts.Add(d.GetProperty("question").GetString()!);
            texts.Add(d.GetProperty("answer").GetString()!);
        }
        foreach (var line in File.ReadLines(SharedAssets.RequireFile(SharedAssets.DataFile("math500", "test"))).Take(500))
        {
            var d = JsonDocument.Parse(line).RootElement;
            texts.Add(d.GetProperty("problem").GetString()!);
            texts.Add(d.GetProperty("solution").GetString()!);
        }
        return texts;
    }

    /// <summary>Edge cases: whitespace runs, contractions, scripts, marks, digits, emoji, special-token look-alikes.</summary>
    public static readonly string[] Tricky =
    [
        "", " ", "  ", "\n", "\t\t\n\r\n  \u00a0\u2003x\u3000y", "   leading  spaces and trailing   ",
        "Hello 'S 'LL 'Re it's don't I'M we'Ve ' s '", "’s ʼs \u0130stanbul \u212Aelvin",
        "emoji 🦙🦙 𝔘𝔫𝔦 κόσμε 日本語テキスト 한국어 ١٢٣ ①②③ ½ ¾", "a\u0301e\u0300 combining marks ก่อน",
        "123456789 1,234.5678 3.14159 1e-10", "$\\frac{1}{2}$ and \\boxed{42} \\[ x^2 + y^2 = z^2 \\]",
        "<|im_start|>system\nYou are<|im_end|>\n<|im_start|>user\nhi [PAD151650] there</s>x<|endoftext|>",
        "<s>Once upon a time</s> <unk>", new string('a', 300), new string(' ', 100) + "z",
        string.Concat(Enumerable.Repeat("ab1 ", 200)), string.Concat(Enumerable.Repeat("\n\n ", 50)),
    ];

    /// <summary>
    /// The strings and expected ids of a llama.cpp vocab test (<c>.inp</c>: strings separated by lines
    /// "__ggml_vocab_test__"; <c>.out</c>: one line of ids per string), read as test-tokenizer-0 reads them.
    /// </summary>
    public static IReadOnlyList<(string Text, int[] Ids)> VocabTests(string vocabPath)
    {
        var raw = File.ReadAllText(SharedAssets.RequireFile(vocabPath + ".inp"));
        var outLines = File.ReadAllLines(SharedAssets.RequireFile(vocabPath + ".out"));
        const string sep = "\n__ggml_vocab_test__\n";
        var inputs = new List<string>();
        for (var pos = 0; pos < raw.Length;)
        {
            var next = raw.IndexOf(sep, pos, StringComparison.Ordinal);
            if (next < 0) { inputs.Add(raw[pos..]); break; }
            inputs.Add(raw[pos..next]);
            pos = next + sep.Length;
        }
        Assert.Equal(inputs.Count, outLines.Length);
        return inputs.Select((s, i) => (s, outLines[i].Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray())).ToList();
    }
}
