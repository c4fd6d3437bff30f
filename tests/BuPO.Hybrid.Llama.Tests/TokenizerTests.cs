using System.Text;
using BuPO.Hybrid.Tests.Support;
using BuPO.Hybrid.Tokenizers;

namespace BuPO.Hybrid.Llama.Tests;

[Collection(LlamaCollection.Name)]
public class TokenizerTests(LlamaFixture fx)
{
    /// <summary>Reads llama.cpp's tokenizer test vectors the way tests/test-tokenizer-0.cpp does.</summary>
    public static List<(string Text, int[] Ids)> ReadVocabTests(string inpPath)
    {
        var raw = Encoding.UTF8.GetString(File.ReadAllBytes(inpPath));
        const string sep = "\n__ggml_vocab_test__\n";
        var inputs = new List<string>();
        int pos = 0;
        while (pos < raw.Length)
        {
            int next = raw.IndexOf(sep, pos, StringComparison.Ordinal);
            if (next < 0) { inputs.Add(raw[pos..]); break; }
            inputs.Add(raw[pos..next]);
            pos = next + sep.Length;
        }
        var outputs = File.ReadAllLines(inpPath[..^".inp".Length] + ".out")
            .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray()).ToList();
        Assert.Equal(inputs.Count, outputs.Count);
        return inputs.Zip(outputs).ToList();
    }

    [Fact]
    public void Qwen2VocabMatchesLlamaCppTestVectors()
    {
        var path = SharedAssets.RequireFile(SharedAssets.Qwen2Vocab);
        var cases = ReadVocabTests(path + ".inp");
        Assert.True(cases.Count > 40);
        using var model = LlamaModel.Load(path, new LlamaModelOptions { VocabOnly = true });
        ITextTokenizer tok = model.Vocab;
        Assert.Equal("bpe", model.Vocab.Type);
        int failures = 0;
        var report = new StringBuilder();
        foreach (var (text, ids) in cases)
        {
            var got = tok.Encode(text, addSpecial: false, parseSpecial: false);
            if (!got.SequenceEqual(ids))
            {
                failures++;
                report.AppendLine($"'{text}': want [{string.Join(" ", ids)}] got [{string.Join(" ", got)}]");
            }
            // Byte-level BPE round-trips exactly.
            Assert.Equal(text, tok.Decode(got));
        }
        Assert.True(failures == 0, report.ToString());
    }

    [Fact]
    public void StoriesVocabSpecialTokensAndPieces()
    {
        var v = fx.Stories.Vocab;
        Assert.Equal(512, v.VocabSize);
        Assert.Equal("spm", v.Type);
        Assert.Equal(1, v.BosId);
        Assert.Equal(2, v.EosId);
        Assert.True(v.AddsBos);
        Assert.True(v.IsEndOfGeneration(v.EosId));
        Assert.False(v.IsEndOfGeneration(v.BosId));
        var ids = v.Encode("Once upon a time");
        Assert.Equal(v.BosId, ids[0]);
        Assert.Equal(ids[1..], v.Encode("Once upon a time", addSpecial: false));
        // llama_detokenize semantics: the SPM leading space is dropped, except when a removed BOS starts the ids.
        Assert.Equal("Once upon a time", v.Decode(ids[1..]));
        Assert.Equal("<s> Once upon a time", v.Decode(ids, unparseSpecial: true));
        Assert.Equal(" Once upon a time", v.Decode(ids, removeSpecial: true));
        Assert.Equal(" Once upon a time", v.DecodePieces(ids));
        // Pieces concatenate to the text (SPM: the dummy-prefix space on the first piece).
        Assert.Equal(" Once upon a time", string.Concat(ids[1..].Select(v.TokenToPiece)));
        Assert.Equal("\n", v.TokenToPiece(13)); // <0x0A> byte token
        Assert.Equal("<0x0A>", v.GetText(13));
        Assert.Throws<ArgumentOutOfRangeException>(() => v.Decode([5000]));
        // Special tokens are only recognized in text with parseSpecial.
        Assert.Equal(new[] { 1, 1 }, v.Encode("<s>", addSpecial: true, parseSpecial: true));
        Assert.NotEqual(new[] { 1, 1 }, v.Encode("<s>", addSpecial: true, parseSpecial: false));
    }
}
