using BuPO.Hybrid.Llama;
using BuPO.Hybrid.Tests.Support;
using BuPO.Hybrid.Tokenizers;

namespace BuPO.Hybrid.Tokenizers.Tests;

/// <summary>The managed tokenizer against llama.cpp's (<see cref="LlamaVocab"/>) on the same vocabularies.</summary>
[Collection(LlamaCollection.Name)]
public class TokenizerVsLlamaTests(LlamaFixture fx)
{
    private static readonly (bool AddSpecial, bool ParseSpecial)[] EncodeModes = [(false, false), (true, false), (true, true)];
    private static readonly (bool RemoveSpecial, bool UnparseSpecial)[] DecodeModes = [(false, false), (true, false), (false, true), (true, true)];

    private static LlamaModel LoadVocab(string path) => LlamaFixture.LoadVocab(path);

    /// <summary>Compares encode (every mode) and decode (every mode) on each text; returns the mismatch descriptions.</summary>
    private static List<string> Compare(ITextTokenizer managed, LlamaVocab llama, IEnumerable<string> texts, bool fullModes = true)
    {
        var problems = new List<string>();
        var encodeModes = fullModes ? EncodeModes : EncodeModes[..1];
        var decodeModes = fullModes ? DecodeModes : DecodeModes[..1];
        foreach (var text in texts)
        {
            foreach (var (add, parse) in encodeModes)
            {
                var expected = llama.Encode(text, add, parse);
                var actual = managed.Encode(text, add, parse);
                if (!expected.AsSpan().SequenceEqual(actual))
                {
                    problems.Add($"encode(add={add}, parse={parse}) of {Show(text)}: llama.cpp [{string.Join(' ', expected)}] managed [{string.Join(' ', actual)}]");
                    continue;
                }
                foreach (var (remove, unparse) in decodeModes)
                {
                    var e = llama.Decode(expected, remove, unparse);
                    var a = managed.Decode(expected, remove, unparse);
                    if (e != a) problems.Add($"decode(remove={remove}, unparse={unparse}) of {Show(text)}: llama.cpp {Show(e)} managed {Show(a)}");
                }
            }
        }
        return problems;
    }

    private static string Show(string s) => "\"" + (s.Length > 120 ? s[..120] + "..." : s).Replace("\n", "\\n") + "\"";

    private static void AssertNone(List<string> problems, int total)
    {
        if (problems.Count > 0)
            Assert.Fail($"{problems.Count} of {total} comparisons differ; first ones:\n" + string.Join("\n", problems.Take(5)));
    }

    private static void AssertRoundTrip(ITextTokenizer tok, IEnumerable<string> texts)
    {
        var bad = texts.Where(t => tok.Decode(tok.Encode(t, addSpecial: false)) != t).ToList();
        if (bad.Count > 0) Assert.Fail($"decode(encode(x)) != x for {bad.Count} texts, e.g. {Show(bad[0])}");
    }

    /// <summary>The special ids and flags, and every token's end-of-generation flag and piece, as llama.cpp has them.</summary>
    private static void AssertSameVocabulary(GgufTokenizer managed, LlamaVocab llama)
    {
        Assert.Equal(llama.VocabSize, managed.VocabSize);
        Assert.Equal(llama.BosId, managed.BosId);
        Assert.Equal(llama.EosId, managed.EosId);
        Assert.Equal(llama.EotId, managed.EotId);
        Assert.Equal(llama.AddsBos, managed.AddsBos);
        Assert.Equal(llama.AddsEos, managed.AddsEos);
        for (var id = 0; id < managed.VocabSize; id++)
        {
            Assert.Equal(llama.IsEndOfGeneration(id), managed.IsEndOfGeneration(id));
            Assert.Equal(llama.TokenToPieceBytes(id), managed.TokenToPieceBytes(id).ToArray());
        }
    }

    [Fact]
    public void Qwen2MatchesLlamaCppOnMathLines()
    {
        var path = SharedAssets.RequireFile(SharedAssets.Qwen2Vocab);
        var lines = TokenizerCorpus.MathLines();
        Assert.Equal(2000, lines.Count);
        using var model = LoadVocab(path);
        var managed = GgufTokenizer.FromGguf(path);
        var llama = model.Vocab;
        AssertSameVocabulary(managed, llama);
        var texts = lines.Concat(TokenizerCorpus.Tricky).Concat(TokenizerCorpus.VocabTests(path).Select(t => t.Text)).ToList();
        AssertNone(Compare(managed, llama, texts), texts.Count * EncodeModes.Length);
        AssertRoundTrip(managed, lines);
        AssertRoundTrip(llama, lines);
    }

    [Fact]
    public void Stories260KMatchesLlamaCppOnMathLines()
    {
        var path = SharedAssets.RequireFile(SharedAssets.StoriesModel);
        var lines = TokenizerCorpus.MathLines();
        var managed = GgufTokenizer.FromGguf(path);
        var llama = fx.Stories.Vocab;
        AssertSameVocabulary(managed, llama);
        var texts = lines.Concat(TokenizerCorpus.Tricky).ToList();
        AssertNone(Compare(managed, llama, texts), texts.Count * EncodeModes.Length);
        AssertRoundTrip(managed, lines);
        AssertRoundTrip(llama, lines);
    }

    /// <summary>One tokenizer.ggml.pre name for each distinct set of expressions and flags the managed tokenizer implements.</summary>
    public static TheoryData<string> PreTokenizers =>
    [
        "default", "gpt-2", "llama-bpe", "dbrx", "glm4", "stablelm2", "qwen35", "starcoder", "command-r", "falcon", "deepseek-coder",
        "deepseek-v3", "spark2_5", "youtu", "jais-2", "poro-chat", "bloom", "viking", "tekken", "exaone-moe", "gpt-4o",
        "granite-embed-multi-97m", "bailingmoe", "seed-coder", "ufakzeka", "laguna", "minicpm5",
    ];

    /// <summary>Pre-tokenizers of later llama.cpp releases (v0.5.0 has them) that the loaded commit rejects as unknown.</summary>
    private static readonly HashSet<string> NewerThanLlamaCpp = ["spark2_5", "ufakzeka"];

    /// <summary>
    /// The same comparison on a byte-level BPE vocabulary the test generates (no ../shared needed), relabelled with each
    /// pre-tokenizer: every splitter against llama.cpp's on generated GSM8K/MATH-like texts and the tricky cases.
    /// </summary>
    [Theory]
    [MemberData(nameof(PreTokenizers))]
    public void PreTokenizerMatchesLlamaCppOnAGeneratedVocabulary(string pre)
    {
        if (NewerThanLlamaCpp.Contains(pre))
            Assert.Skip($"llama.cpp {LlamaBackend.LlamaCppCommit} (LLamaSharp {LlamaBackend.LlamaSharpVersion}) predates the '{pre}' pre-tokenizer: no reference to compare with");
        var source = Path.Combine(Path.GetTempPath(), $"bupo-genvocab-{Environment.ProcessId}-{pre}-src.gguf");
        var path = Path.Combine(Path.GetTempPath(), $"bupo-genvocab-{Environment.ProcessId}-{pre}.gguf");
        try
        {
            GeneratedVocabularies.WriteBpe(source);
            GgufVocabWriter.WriteModified(source, path, new Dictionary<string, Gguf.GgufValue?> { ["tokenizer.ggml.pre"] = GgufVocabWriter.Str(pre) });
            var managed = GgufTokenizer.FromGguf(path);
            Assert.Equal(pre, managed.PreTokenizerName);
            using var model = LoadVocab(path);
            var texts = GeneratedVocabularies.Texts(150, seed: 5).Concat(TokenizerCorpus.Tricky).ToList();
            Assert.Equal(model.Vocab.AddsBos, managed.AddsBos);
            AssertNone(Compare(managed, model.Vocab, texts, fullModes: false), texts.Count);
        }
        finally
        {
            File.Delete(source);
            File.Delete(path);
        }
    }

    /// <summary>
    /// The qwen2 vocabulary relabelled with another pre-tokenizer: llama.cpp then splits with that type's
    /// expressions, which exercises each splitter on a real vocabulary.
    /// </summary>
    [Theory]
    [MemberData(nameof(PreTokenizers))]
    public void PreTokenizerMatchesLlamaCpp(string pre)
    {
        if (NewerThanLlamaCpp.Contains(pre))
            Assert.Skip($"llama.cpp {LlamaBackend.LlamaCppCommit} (LLamaSharp {LlamaBackend.LlamaSharpVersion}) predates the '{pre}' pre-tokenizer: no reference to compare with");
        var source = SharedAssets.RequireFile(SharedAssets.Qwen2Vocab);
        var lines = TokenizerCorpus.MathLines();
        var path = Path.Combine(Path.GetTempPath(), $"bupo-vocab-{pre}-{Environment.ProcessId}.gguf");
        GgufVocabWriter.WriteModified(source, path, new Dictionary<string, Gguf.GgufValue?> { ["tokenizer.ggml.pre"] = GgufVocabWriter.Str(pre) });
        try
        {
            var managed = GgufTokenizer.FromGguf(path);
            Assert.Equal(pre, managed.PreTokenizerName);
            using var model = LoadVocab(path);
            var texts = lines.Where((_, i) => i % 8 == 0)
                .Concat(TokenizerCorpus.Tricky)
                .Concat(TokenizerCorpus.VocabTests(source).Select(t => t.Text))
                .ToList();
            Assert.Equal(model.Vocab.AddsBos, managed.AddsBos);
            AssertNone(Compare(managed, model.Vocab, texts, fullModes: false), texts.Count);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
