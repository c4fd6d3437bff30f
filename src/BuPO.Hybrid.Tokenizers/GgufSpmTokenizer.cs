using System.Buffers;
using System.Text;
using BuPO.Hybrid.Gguf;

namespace BuPO.Hybrid.Tokenizers;

/// <summary>
/// SentencePiece-style vocabularies (<c>tokenizer.ggml.model = llama</c>): llama.cpp's <c>llm_tokenizer_spm_session</c>.
/// Adjacent symbols are merged while their concatenation is a token, highest score first; a symbol that is no token
/// falls back to byte tokens (<c>&lt;0xXX&gt;</c>).
/// </summary>
public sealed class GgufSpmTokenizer : GgufTokenizer
{
    // llama_vocab::impl::load for LLAMA_VOCAB_TYPE_SPM
    private static readonly GgufVocabularyDefaults SpmDefaults = new(
        TokenTextForm.SentencePiece, Bos: 1, Eos: 2, Unknown: 0, AddSpacePrefix: true, CleanSpaces: false, AddBos: true);

    private readonly float[] _scores;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _tokenLookup;
    private readonly int[] _byteTokens = new int[256];

    private GgufSpmTokenizer(GgufFile f) : base(new GgufVocabulary(f, SpmDefaults))
    {
        _scores = Vocabulary.Scores;
        _tokenLookup = Vocabulary.TokenLookup;
        var tokenToId = Vocabulary.TokenToId;
        for (var b = 0; b < 256; b++)
        {
            if (tokenToId.TryGetValue($"<0x{b:X2}>", out var id)) _byteTokens[b] = id;
            else _byteTokens[b] = b < 0x80 && tokenToId.TryGetValue(((char)b).ToString(), out id) ? id : Null;
        }
    }

    /// <summary>Reads the SentencePiece tokenizer of <paramref name="f"/> (whose tokenizer.ggml.model is llama).</summary>
    /// <exception cref="BupoException">The vocabulary is malformed.</exception>
    internal static GgufSpmTokenizer Read(GgufFile f) => new(f);

    /// <inheritdoc/>
    private protected override bool PrefixesSpace(bool afterSpecial) => AddsSpacePrefix && afterSpecial;

    private readonly record struct SpmBigram(int Left, int Right, int Size);

    private static readonly IComparer<(float Score, int Left)> SpmOrder = Comparer<(float Score, int Left)>.Create(
        static (a, b) => a.Score != b.Score ? b.Score.CompareTo(a.Score) : a.Left.CompareTo(b.Left));

    // llm_tokenizer_spm_session::tokenize, on the text with spaces escaped as ▁
    private protected override void EncodeText(ReadOnlySpan<char> fragment, bool afterSpecial, List<int> output)
    {
        var prefixSpace = PrefixesSpace(afterSpecial);
        var len = fragment.Length + (prefixSpace ? 1 : 0);
        var buf = ArrayPool<char>.Shared.Rent(len);
        try
        {
            var p = 0;
            if (prefixSpace) buf[p++] = '\u2581';
            foreach (var c in fragment) buf[p++] = c == ' ' ? '\u2581' : c;
            ReadOnlySpan<char> text = buf.AsSpan(0, len);

            var start = new List<int>(len);
            for (var i = 0; i < len;)
            {
                start.Add(i);
                i += char.IsHighSurrogate(text[i]) && i + 1 < len && char.IsLowSurrogate(text[i + 1]) ? 2 : 1;
            }
            var n = start.Count;
            var symStart = start.ToArray();
            var symLen = new int[n];
            var prev = new int[n];
            var next = new int[n];
            for (var i = 0; i < n; i++)
            {
                symLen[i] = (i + 1 < n ? symStart[i + 1] : len) - symStart[i];
                prev[i] = i - 1;
                next[i] = i + 1 < n ? i + 1 : -1;
            }
            var queue = new PriorityQueue<SpmBigram, (float, int)>(SpmOrder);
            void TryAdd(ReadOnlySpan<char> t, int left, int right)
            {
                if (left == -1 || right == -1) return;
                var size = symLen[left] + symLen[right];
                if (!_tokenLookup.TryGetValue(t.Slice(symStart[left], size), out var token)) return;
                queue.Enqueue(new SpmBigram(left, right, size), (_scores[token], left));
            }
            for (var i = 1; i < n; i++) TryAdd(text, i - 1, i);
            while (queue.TryDequeue(out var b, out _))
            {
                if (symLen[b.Left] == 0 || symLen[b.Right] == 0 || symLen[b.Left] + symLen[b.Right] != b.Size) continue;
                symLen[b.Left] += symLen[b.Right];
                symLen[b.Right] = 0;
                next[b.Left] = next[b.Right];
                if (next[b.Right] >= 0) prev[next[b.Right]] = b.Left;
                TryAdd(text, prev[b.Left], b.Left);
                TryAdd(text, b.Left, next[b.Left]);
            }
            for (var i = 0; i != -1; i = next[i]) Resegment(text.Slice(symStart[i], symLen[i]), output);
        }
        finally
        {
            ArrayPool<char>.Shared.Return(buf);
        }
    }

    private void Resegment(ReadOnlySpan<char> symbol, List<int> output)
    {
        if (_tokenLookup.TryGetValue(symbol, out var token))
        {
            output.Add(token);
            return;
        }
        // byte fallback: <0xXX> tokens (or the byte itself as a token)
        Span<byte> bytes = stackalloc byte[8];
        var count = Encoding.UTF8.GetBytes(symbol, bytes);
        foreach (var b in bytes[..count])
        {
            var id = _byteTokens[b];
            if (id == Null) throw new BupoException($"the vocabulary has no byte token for 0x{b:X2} (needed for '{symbol}')");
            output.Add(id);
        }
    }
}
