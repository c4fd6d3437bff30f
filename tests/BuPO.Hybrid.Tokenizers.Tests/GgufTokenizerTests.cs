using BuPO.Hybrid.Gguf;
using BuPO.Hybrid.Tests.Support;
using BuPO.Hybrid.Tokenizers;
using static BuPO.Hybrid.Tokenizers.Tests.GgufVocabWriter;

namespace BuPO.Hybrid.Tokenizers.Tests;

/// <summary>The managed tokenizer on its own (no llama.cpp): reference ids, special tokens, errors, factory.</summary>
public class GgufTokenizerTests
{
    private static readonly Lazy<GgufTokenizer> s_qwen2 = new(() => GgufTokenizer.FromGguf(SharedAssets.Qwen2Vocab));

    private static GgufTokenizer Qwen2()
    {
        SharedAssets.RequireFile(SharedAssets.Qwen2Vocab);
        return s_qwen2.Value;
    }

    // A byte-level BPE vocabulary the tests generate: for properties any vocabulary has (no ../shared needed).
    private static readonly Lazy<GgufTokenizer> s_generated = new(() =>
    {
        var path = Path.Combine(Path.GetTempPath(), $"bupo-generated-bpe-{Environment.ProcessId}.gguf");
        try
        {
            GeneratedVocabularies.WriteBpe(path);
            return GgufTokenizer.FromGguf(path);
        }
        finally { File.Delete(path); }
    });

    [Fact]
    public void Qwen2VocabGivesTheReferenceIds()
    {
        var tok = Qwen2();
        var tests = TokenizerCorpus.VocabTests(SharedAssets.Qwen2Vocab);
        Assert.True(tests.Count > 40);
        foreach (var (text, ids) in tests)
        {
            Assert.Equal(ids, tok.Encode(text, addSpecial: false, parseSpecial: false));
            Assert.Equal(text, tok.Decode(ids));
        }
    }

    [Fact]
    public void Qwen2Metadata()
    {
        var tok = Qwen2();
        Assert.Equal("gpt2", tok.Model);
        Assert.Equal("qwen2", tok.PreTokenizerName);
        Assert.Equal(151936, tok.VocabSize);
        Assert.Equal(151643, tok.BosId);
        Assert.Equal(151643, tok.EosId);
        Assert.False(tok.AddsBos);
        Assert.True(tok.IsEndOfGeneration(151643)); // <|endoftext|>
        Assert.True(tok.IsEndOfGeneration(151645)); // <|im_end|>
        Assert.False(tok.IsEndOfGeneration(151644)); // <|im_start|>
        Assert.False(tok.IsEndOfGeneration(-1));
        Assert.Equal("<|im_end|>", tok.TokenToPiece(151645));
        Assert.Equal(" world", tok.TokenToPiece(tok.Encode(" world", false).Single()));
    }

    [Fact]
    public void ControlTokensAreParsedOnlyWhenAsked()
    {
        var tok = Qwen2();
        const string chat = "<|im_start|>hi<|im_end|>\n";
        Assert.Equal([151644, 6023, 151645, 198], tok.Encode(chat, addSpecial: true, parseSpecial: true));
        var plain = tok.Encode(chat, addSpecial: false, parseSpecial: false);
        Assert.DoesNotContain(151644, plain);
        Assert.Equal(chat, tok.Decode(plain));
        // control tokens are dropped unless unparsed; user-defined ones ([PAD...]) are always split out and rendered
        Assert.Equal("hi\n", tok.Decode([151644, 6023, 151645, 198]));
        Assert.Equal(chat, tok.Decode([151644, 6023, 151645, 198], unparseSpecial: true));
        Assert.Equal([151650], tok.Encode("[PAD151650]", addSpecial: false, parseSpecial: false));
        Assert.Equal("[PAD151650]", tok.Decode([151650]));
    }

    [Fact]
    public void ControlTokensOfAGeneratedVocabularyAreParsedOnlyWhenAsked()
    {
        var tok = s_generated.Value;
        // The generated vocabulary ends with Qwen's specials: <|endoftext|>, <|im_start|>, <|im_end|>.
        int imStart = tok.VocabSize - 2, imEnd = tok.VocabSize - 1;
        Assert.Equal("<|im_start|>", tok.TokenToPiece(imStart));
        const string chat = "<|im_start|>hi<|im_end|>\n";
        var parsed = tok.Encode(chat, addSpecial: true, parseSpecial: true);
        int[] expected = [imStart, .. tok.Encode("hi", addSpecial: false), imEnd, .. tok.Encode("\n", addSpecial: false)];
        Assert.Equal(expected, parsed);
        var plain = tok.Encode(chat, addSpecial: false, parseSpecial: false);
        Assert.DoesNotContain(imStart, plain);
        Assert.DoesNotContain(imEnd, plain);
        Assert.Equal(chat, tok.Decode(plain));
        Assert.Equal("hi\n", tok.Decode(parsed));
        Assert.Equal(chat, tok.Decode(parsed, unparseSpecial: true));
    }

    [Fact]
    public void Stories260KIsSentencePiece()
    {
        var tok = GgufTokenizer.FromGguf(SharedAssets.RequireFile(SharedAssets.StoriesModel));
        Assert.Equal("llama", tok.Model);
        Assert.Equal(512, tok.VocabSize);
        Assert.Equal(1, tok.BosId);
        Assert.Equal(2, tok.EosId);
        Assert.True(tok.AddsBos);
        Assert.True(tok.AddsSpacePrefix);
        var ids = tok.Encode("Once upon a time", addSpecial: true);
        Assert.Equal(1, ids[0]);
        Assert.Equal("Once upon a time", tok.Decode(ids.AsSpan(1)));
        Assert.Equal(" Once upon a time", tok.Decode(ids, removeSpecial: true)); // llama.cpp keeps the space after a removed BOS
        Assert.Equal("<s> Once upon a time", tok.Decode(ids, unparseSpecial: true));
        // characters outside the vocabulary fall back to <0xXX> byte tokens
        var emoji = tok.Encode("🦙", addSpecial: false);
        Assert.All(emoji[1..], id => Assert.Equal(LlamaTokenAttributes.Byte, tok.GetAttributes(id)));
        Assert.Equal("🦙", tok.Decode(emoji));
    }

    [Fact]
    public void ByteSymbolsAreGpt2sByteToUnicodeTable()
    {
        var symbols = ByteLevelBpeVocabulary.ByteSymbols;
        Assert.Equal(256, symbols.Count);
        Assert.Equal(256, symbols.Distinct().Count());
        Assert.All(symbols, s => Assert.Single(s));
        Assert.Equal("A", symbols['A']);   // printable ASCII spells itself
        Assert.Equal("\u0120", symbols[' ']); // Ġ: the space of every GPT-2 vocabulary
        Assert.Equal("\u010A", symbols['\n']); // Ċ
        Assert.Equal("\u00E9", symbols[0xE9]);  // Latin-1 letters spell themselves
        Assert.Equal("\u0100", symbols[0]);
    }

    [Fact]
    public void AWrittenByteLevelBpeVocabularyLoadsWithItsSpecialsAndMerges()
    {
        var path = Path.Combine(Path.GetTempPath(), $"bupo-bpe-{Guid.NewGuid():N}.gguf");
        try
        {
            var tokens = ByteLevelBpeVocabulary.ByteSymbols.Concat(["ab", "\u0120ab"]).ToList();
            ByteLevelBpeVocabulary.Write(path, tokens, ["a b", "\u0120 ab"], ByteLevelBpeVocabulary.QwenSpecials, "test-bpe");
            var tok = GgufTokenizer.FromGguf(path);
            Assert.Equal("gpt2", tok.Model);
            Assert.Equal("qwen2", tok.PreTokenizerName);
            Assert.Equal(261, tok.VocabSize);
            Assert.Equal(258, tok.EosId);
            Assert.Equal(258, tok.BosId);
            Assert.False(tok.AddsBos);
            Assert.Equal([256, 257], tok.Encode("ab ab", addSpecial: false, parseSpecial: false));
            Assert.Equal([260], tok.Encode("<|im_end|>", addSpecial: false, parseSpecial: true));
            Assert.Throws<ArgumentException>(() => ByteLevelBpeVocabulary.Write(path + ".x", tokens, [], []));
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void DecodeRejectsIdsOutsideTheVocabulary()
    {
        var tok = s_generated.Value;
        Assert.Throws<ArgumentOutOfRangeException>(() => tok.Decode([5, tok.VocabSize]));
        Assert.Throws<ArgumentOutOfRangeException>(() => tok.TokenToPiece(-1));
    }

    private static string TinyVocab(string model, string? pre)
    {
        var path = Path.Combine(Path.GetTempPath(), $"bupo-tiny-vocab-{Guid.NewGuid():N}.gguf");
        var kv = new List<KeyValuePair<string, GgufValue>>
        {
            new("general.architecture", Str("llama")),
            new("tokenizer.ggml.model", Str(model)),
            new("tokenizer.ggml.tokens", Strings("a", "b", "ab", "<|endoftext|>")),
            new("tokenizer.ggml.token_type", Ints(1, 1, 1, 3)),
            new("tokenizer.ggml.merges", Strings("a b")),
        };
        if (pre != null) kv.Add(new("tokenizer.ggml.pre", Str(pre)));
        Write(path, kv);
        return path;
    }

    [Fact]
    public void UnknownTokenizerModelIsNamed()
    {
        var path = TinyVocab("wordpiece-xyz", null);
        try
        {
            var e = Assert.Throws<UnsupportedTokenizerException>(() => GgufTokenizer.FromGguf(path));
            Assert.IsAssignableFrom<BupoException>(e);
            Assert.Contains("'wordpiece-xyz'", e.Message);
            Assert.Contains("tokenizer.ggml.model", e.Message);
            Assert.Contains(path, e.Message);
            Assert.DoesNotContain('\n', e.Message);
        }
        finally { File.Delete(path); }
    }

    [Theory]
    [InlineData("mystery-pre", "unknown to llama.cpp")]
    [InlineData("kimi-k2", "not implemented")]
    public void UnsupportedPreTokenizerIsNamed(string pre, string why)
    {
        var path = TinyVocab("gpt2", pre);
        try
        {
            var e = Assert.Throws<UnsupportedTokenizerException>(() => GgufTokenizer.FromGguf(path));
            Assert.Contains($"'{pre}'", e.Message);
            Assert.Contains("tokenizer.ggml.pre", e.Message);
            Assert.Contains(why, e.Message);
            Assert.Contains(path, e.Message);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void TinyByteLevelVocabMergesAndFallsBackToAsciiBytes()
    {
        var path = TinyVocab("gpt2", "gpt-2");
        try
        {
            var tok = GgufTokenizer.FromGguf(path);
            Assert.Equal([2, 2, 0], tok.Encode("ababa", addSpecial: false));
            // "c" has no token: llama.cpp drops bytes it cannot map
            Assert.Equal([2, 0], tok.Encode("abca", addSpecial: false));
            Assert.Equal([2, 3], tok.Encode("ab<|endoftext|>", addSpecial: false, parseSpecial: true));
            Assert.Equal("abab", tok.Decode([2, 2]));
            Assert.True(tok.IsEndOfGeneration(3));
        }
        finally { File.Delete(path); }
    }

    private sealed class StubTokenizer : ITextTokenizer
    {
        public int VocabSize => 1;
        public int BosId => -1;
        public int EosId => -1;
        public bool AddsBos => false;
        public bool IsEndOfGeneration(int id) => false;
        public int[] Encode(string text, bool addSpecial = true, bool parseSpecial = false) => [0];
        public string Decode(ReadOnlySpan<int> ids, bool removeSpecial = false, bool unparseSpecial = false) => "";
        public string TokenToPiece(int id) => "";
    }

    [Fact]
    public void FactoryFallsBackOnlyForUnsupportedVocabularies()
    {
        var unsupported = TinyVocab("gpt2", "mystery-pre");
        var supported = TinyVocab("gpt2", "qwen2");
        try
        {
            var stub = new StubTokenizer();
            Assert.Same(stub, TokenizerFactory.Create(unsupported, () => stub));
            Assert.Throws<UnsupportedTokenizerException>(() => TokenizerFactory.Create(unsupported));
            Assert.IsType<GgufBpeTokenizer>(TokenizerFactory.Create(supported, () => stub));
            Assert.Throws<BupoException>(() => TokenizerFactory.Create(unsupported + ".missing", () => stub));
        }
        finally
        {
            File.Delete(unsupported);
            File.Delete(supported);
        }
    }

    [Fact]
    public void EncodingIsThreadSafe()
    {
        var tok = s_generated.Value;
        var lines = GeneratedVocabularies.Texts(400, seed: 3).ToArray();
        var expected = lines.Select(l => tok.Encode(l, false)).ToArray();
        Parallel.For(0, 4, _ =>
        {
            for (var i = 0; i < lines.Length; i++) Assert.Equal(expected[i], tok.Encode(lines[i], false));
        });
    }
}
