using System.Buffers;
using BuPO.Hybrid.Llama;
using BuPO.Hybrid.Tests.Support;
using Microsoft.ML.Tokenizers;

namespace BuPO.Hybrid.Tokenizers.Tests;

/// <summary>
/// The managed tokenizer through Microsoft.ML.Tokenizers' <see cref="Tokenizer"/> API (what ML.NET and
/// Microsoft.Extensions.AI code calls): the same ids and text as llama.cpp's <c>llama_tokenize(add_special = true,
/// parse_special = false)</c> and <c>llama_detokenize</c>.
/// </summary>
[Collection(LlamaCollection.Name)]
public class MicrosoftMlTokenizerTests(LlamaFixture fx)
{
    /// <summary>EncodeToIds, EncodeToTokens, CountTokens and Decode against llama.cpp on each text; returns the mismatches.</summary>
    private static List<string> Compare(Tokenizer ml, LlamaVocab llama, IEnumerable<string> texts)
    {
        var problems = new List<string>();
        foreach (var text in texts)
        {
            var expected = llama.Encode(text, addSpecial: true, parseSpecial: false);
            var ids = ml.EncodeToIds(text);
            if (!ids.SequenceEqual(expected)) problems.Add($"EncodeToIds({Show(text)}): llama.cpp [{string.Join(' ', expected)}] ML API [{string.Join(' ', ids)}]");
            var tokens = ml.EncodeToTokens(text, out _);
            if (!tokens.Select(t => t.Id).SequenceEqual(expected)) problems.Add($"EncodeToTokens({Show(text)}) ids differ from llama.cpp");
            var count = ml.CountTokens(text);
            if (count != expected.Length) problems.Add($"CountTokens({Show(text)}): llama.cpp {expected.Length} ML API {count}");
            var decoded = ml.Decode(expected);
            var want = llama.Decode(expected);
            if (decoded != want) problems.Add($"Decode of {Show(text)}: llama.cpp {Show(want)} ML API {Show(decoded ?? "(null)")}");
        }
        return problems;
    }

    private static string Show(string s) => "\"" + (s.Length > 80 ? s[..80] + "..." : s).Replace("\n", "\\n") + "\"";

    private static void AssertNone(List<string> problems, int texts)
    {
        if (problems.Count > 0) Assert.Fail($"{problems.Count} mismatches on {texts} texts; first ones:\n" + string.Join("\n", problems.Take(5)));
    }

    [Fact]
    public void Qwen2ThroughTheMlApiMatchesLlamaCppOnMathLines()
    {
        var path = SharedAssets.RequireFile(SharedAssets.Qwen2Vocab);
        var lines = TokenizerCorpus.MathLines();
        Tokenizer ml = GgufTokenizer.FromGguf(path);
        using var model = LlamaFixture.LoadVocab(path);
        AssertNone(Compare(ml, model.Vocab, lines), lines.Count);
    }

    [Fact]
    public void Stories260KThroughTheMlApiMatchesLlamaCppOnMathLines()
    {
        var path = SharedAssets.RequireFile(SharedAssets.StoriesModel);
        var lines = TokenizerCorpus.MathLines();
        Tokenizer ml = GgufTokenizer.FromGguf(path);
        AssertNone(Compare(ml, fx.Stories.Vocab, lines), lines.Count);
    }

    /// <summary>Writes a generated vocabulary to a temp file, runs <paramref name="test"/> on its path, deletes it.</summary>
    private static void WithVocab(Action<string> write, Action<string> test)
    {
        var path = Path.Combine(Path.GetTempPath(), $"bupo-generated-vocab-{Guid.NewGuid():N}.gguf");
        write(path);
        try { test(path); }
        finally { File.Delete(path); }
    }

    /// <summary>Writes the generated vocabulary of <paramref name="kind"/> ("bpe" or "spm") to <paramref name="path"/>.</summary>
    private static void WriteGenerated(string kind, string path)
    {
        if (kind == "bpe") GeneratedVocabularies.WriteBpe(path);
        else GeneratedVocabularies.WriteSpm(path);
    }

    [Theory]
    [InlineData("bpe", typeof(GgufBpeTokenizer))]
    [InlineData("spm", typeof(GgufSpmTokenizer))]
    public void GeneratedVocabThroughTheMlApiMatchesLlamaCpp(string kind, Type tokenizerType)
    {
        WithVocab(p => WriteGenerated(kind, p), path =>
        {
            var managed = GgufTokenizer.FromGguf(path);
            Assert.IsType(tokenizerType, managed);
            using var model = LlamaFixture.LoadVocab(path);
            Assert.Equal(kind, model.Vocab.Type);
            var texts = GeneratedVocabularies.Texts(300, seed: 5).Concat(TokenizerCorpus.Tricky).ToList();
            AssertNone(Compare(managed, model.Vocab, texts), texts.Count);
        });
    }

    [Theory]
    [InlineData("bpe")]
    [InlineData("spm")]
    public void TokenOffsetsCoverTheTextInOrder(string kind)
    {
        WithVocab(p => WriteGenerated(kind, p), path =>
        {
            Tokenizer ml = GgufTokenizer.FromGguf(path);
            foreach (var text in GeneratedVocabularies.Texts(100, seed: 3))
            {
                var tokens = ml.EncodeToTokens(text, out _);
                int end = 0, previousStart = 0;
                foreach (var t in tokens)
                {
                    var (start, stop) = (t.Offset.Start.Value, t.Offset.End.Value);
                    Assert.InRange(stop, start, text.Length);
                    Assert.True(start >= previousStart, $"token {t.Id} starts at {start}, before the previous token ({previousStart}) in {Show(text)}");
                    Assert.True(start <= end, $"token {t.Id} starts at {start}: characters {end}..{start} of {Show(text)} are covered by no token");
                    previousStart = start;
                    end = Math.Max(end, stop);
                }
                Assert.Equal(text.Length, end);
            }
        });
    }

    [Fact]
    public void MaxTokenCountCutsAPrefixOfTheIds()
    {
        WithVocab(p => GeneratedVocabularies.WriteBpe(p), path =>
        {
            Tokenizer ml = GgufTokenizer.FromGguf(path);
            foreach (var text in GeneratedVocabularies.Texts(50, seed: 9))
            {
                var all = ml.EncodeToIds(text);
                foreach (var max in new[] { 0, 1, 3, all.Count / 2, all.Count, all.Count + 5 })
                {
                    var ids = ml.EncodeToIds(text, max, out _, out var consumed);
                    Assert.True(ids.Count <= max, $"{ids.Count} ids for max {max}");
                    Assert.Equal(all.Take(ids.Count), ids);
                    if (max >= all.Count) Assert.Equal(text.Length, consumed);
                    var index = ml.GetIndexByTokenCount(text, max, out _, out var count);
                    Assert.Equal(ids.Count, count);
                    Assert.Equal(consumed, index);
                    var fromEnd = ml.GetIndexByTokenCountFromEnd(text, max, out _, out var countFromEnd);
                    Assert.InRange(countFromEnd, 0, Math.Min(max, all.Count));
                    Assert.InRange(fromEnd, 0, text.Length);
                }
            }
        });
    }

    [Fact]
    public void DecodeIntoASpanReportsWhatFits()
    {
        WithVocab(p => GeneratedVocabularies.WriteBpe(p), path =>
        {
            var managed = GgufTokenizer.FromGguf(path);
            Tokenizer ml = managed;
            const string text = "Janet sells eggs for $2 each";
            var ids = ml.EncodeToIds(text);
            var big = new char[100];
            Assert.Equal(OperationStatus.Done, ml.Decode(ids, big, out var used, out var written));
            Assert.Equal(ids.Count, used);
            Assert.Equal(text, new string(big, 0, written));
            var small = new char[10];
            Assert.Equal(OperationStatus.DestinationTooSmall, ml.Decode(ids, small, out used, out written));
            Assert.InRange(used, 1, ids.Count - 1);
            Assert.Equal(managed.Decode(ids.Take(used).ToArray()), new string(small, 0, written));
            Assert.Equal(OperationStatus.InvalidData, ml.Decode([0, managed.VocabSize], big, out _, out _));
        });
    }
}
