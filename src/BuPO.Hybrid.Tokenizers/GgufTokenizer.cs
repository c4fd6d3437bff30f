using System.Buffers;
using System.Text;
using BuPO.Hybrid.Gguf;
using Microsoft.ML.Tokenizers;

namespace BuPO.Hybrid.Tokenizers;

/// <summary>
/// A managed port of llama.cpp's tokenizer (src/llama-vocab.cpp), built from the vocabulary in a GGUF file and
/// giving the same ids as <c>llama_tokenize</c> and the same text as <c>llama_detokenize</c>. Two kinds implement it:
/// <see cref="GgufBpeTokenizer"/> (byte-level BPE, <c>tokenizer.ggml.model = gpt2</c>, with the pre-tokenizer named by
/// <c>tokenizer.ggml.pre</c>) and <see cref="GgufSpmTokenizer"/> (SentencePiece-style, <c>llama</c>: score-driven
/// merges, byte fallback); <see cref="TokenizerFactory.FromGguf(GgufFile)"/> picks the kind.
/// </summary>
/// <remarks>
/// <para>It is a Microsoft.ML.Tokenizers <see cref="Tokenizer"/>, so ML.NET and Microsoft.Extensions.AI code can use a
/// GGUF's tokenizer: <c>EncodeToIds</c>, <c>EncodeToTokens</c> and <c>CountTokens</c> give what
/// <see cref="Encode"/> gives with <c>addSpecial = true, parseSpecial = false</c> (llama_tokenize's usual call: BOS
/// where the vocabulary asks for it, special-token texts in the input left as text), and <c>Decode</c> what
/// <see cref="Decode(ReadOnlySpan{int}, bool, bool)"/> gives with its defaults. The pre-tokenizer and the
/// sanitizing of lone surrogates are part of the vocabulary's definition, so <c>considerPreTokenization</c> and
/// <c>considerNormalization</c> do not switch them off; there is no normalizer and the normalized text is null.</para>
/// <para>The merge loops are our own rather than Microsoft.ML.Tokenizers': llama.cpp ranks BPE merges by the texts of
/// the two symbols (a merge may produce a string that is not a token), falls back to single ASCII bytes for such
/// strings and splits text with its own codepoint tables; reproducing that exactly is simpler here.</para>
/// <para>Instances are immutable apart from a bounded, thread-safe cache of pre-token results: safe to share.</para>
/// </remarks>
public abstract class GgufTokenizer : Tokenizer, ITextTokenizer
{
    private protected const int Null = GgufVocabulary.Null;
    private const LlamaTokenAttributes SpecialAttrs = GgufVocabulary.SpecialAttrs;

    private readonly GgufVocabulary _vocab;
    private readonly string[] _texts;
    private readonly LlamaTokenAttributes[] _attrs;
    private readonly byte[][] _pieces;

    private protected GgufTokenizer(GgufVocabulary vocabulary)
    {
        _vocab = vocabulary;
        _texts = vocabulary.Texts;
        _attrs = vocabulary.Attributes;
        _pieces = vocabulary.Pieces;
    }

    /// <summary>The vocabulary read from the GGUF file (shared by both kinds).</summary>
    private protected GgufVocabulary Vocabulary => _vocab;

    /// <summary>tokenizer.ggml.model (gpt2 or llama).</summary>
    public string Model => _vocab.Model;

    /// <summary>tokenizer.ggml.pre ("" when absent; SPM vocabularies have none).</summary>
    public string PreTokenizerName => _vocab.PreTokenizerName;

    /// <inheritdoc/>
    public int VocabSize => _texts.Length;

    /// <inheritdoc/>
    public int BosId => _vocab.BosId;

    /// <inheritdoc/>
    public int EosId => _vocab.EosId;

    /// <summary>End-of-turn token id (tokenizer.ggml.eot_token_id or found by its text), or -1.</summary>
    public int EotId => _vocab.EotId;

    /// <inheritdoc/>
    public bool AddsBos => _vocab.AddsBos;

    /// <summary>Whether EOS is appended when <c>addSpecial</c> is true (tokenizer.ggml.add_eos_token).</summary>
    public bool AddsEos => _vocab.AddsEos;

    /// <summary>Whether a space is put before the text (SPM; tokenizer.ggml.add_space_prefix).</summary>
    public bool AddsSpacePrefix => _vocab.AddSpacePrefix;

    /// <summary>The tokens that end generation, ascending.</summary>
    public IReadOnlyList<int> EndOfGenerationIds => _vocab.EndOfGenerationIds;

    /// <summary>The <c>tokenizer.ggml.pre</c> names the managed tokenizer supports.</summary>
    public static IEnumerable<string> SupportedPreTokenizers => LlamaPreTypes.SupportedNames;

    /// <summary>Loads the tokenizer of a GGUF file (a vocab-only file or a full model); see <see cref="TokenizerFactory.FromGguf(string)"/>.</summary>
    /// <exception cref="UnsupportedTokenizerException">The tokenizer model or pre-tokenizer is not implemented here.</exception>
    /// <exception cref="BupoException">The file is missing or its vocabulary is malformed.</exception>
    public static GgufTokenizer FromGguf(string path) => TokenizerFactory.FromGguf(path);

    /// <inheritdoc cref="FromGguf(string)"/>
    public static GgufTokenizer FromGguf(GgufFile file) => TokenizerFactory.FromGguf(file);

    /// <inheritdoc/>
    public bool IsEndOfGeneration(int id) => _vocab.IsEndOfGeneration(id);

    /// <summary>The token's text as stored in the vocabulary (byte-level or ▁-escaped).</summary>
    public string GetTokenText(int id) => _texts[CheckId(id)];

    /// <summary>The token's attributes as llama.cpp sees them (after its by-text and by-model adjustments).</summary>
    public LlamaTokenAttributes GetAttributes(int id) => _attrs[CheckId(id)];

    /// <summary>The token's score (SPM merge priority; 0 when the vocabulary has none).</summary>
    public float GetScore(int id) => _vocab.Scores[CheckId(id)];

    /// <summary>The id of a token text, or -1.</summary>
    public int TextToToken(string text) => _vocab.TokenToId.TryGetValue(text, out var id) ? id : Null;

    private int CheckId(int id)
    {
        if ((uint)id >= (uint)_texts.Length)
            throw new ArgumentOutOfRangeException(nameof(id), id, $"token id outside the vocabulary (0..{_texts.Length - 1})");
        return id;
    }

    /// <inheritdoc/>
    public string TokenToPiece(int id) => Encoding.UTF8.GetString(_pieces[CheckId(id)]);

    /// <summary>The bytes of a token's piece (a byte token's piece may be part of a UTF-8 sequence).</summary>
    public ReadOnlySpan<byte> TokenToPieceBytes(int id) => _pieces[CheckId(id)];

    // ---------------------------------------------------------------------------------------------------
    // Encode
    // ---------------------------------------------------------------------------------------------------

    private readonly record struct Fragment(int Token, int Offset, int Length)
    {
        public bool IsText => Token < 0;
    }

    /// <summary>Where the tokens of one fragment start in the output (for EncodeToTokens' offsets).</summary>
    private readonly record struct FragmentTokens(Fragment Fragment, int FirstToken, bool AfterSpecial);

    /// <summary>
    /// Appends the ids of one text fragment (text between special tokens), as llama.cpp's tokenizer session of this kind
    /// does; <paramref name="afterSpecial"/> is true for the first fragment and for one that follows a special token.
    /// </summary>
    private protected abstract void EncodeText(ReadOnlySpan<char> fragment, bool afterSpecial, List<int> output);

    /// <summary>Whether this kind put a space (▁) before the fragment when it encoded it (SPM's dummy prefix).</summary>
    private protected virtual bool PrefixesSpace(bool afterSpecial) => false;

    /// <inheritdoc/>
    public int[] Encode(string text, bool addSpecial = true, bool parseSpecial = false)
    {
        ArgumentNullException.ThrowIfNull(text);
        text = LlamaUnicode.Sanitize(text);
        var output = new List<int>(text.Length / 3 + 4);
        EncodeSanitized(text, addSpecial, parseSpecial, output, null);
        return output.ToArray();
    }

    // llama_tokenize: BOS, the fragments (special tokens as they are, text through the model's session), EOS
    private void EncodeSanitized(string text, bool addSpecial, bool parseSpecial, List<int> output, List<FragmentTokens>? fragmentTokens)
    {
        var fragments = text.Length == 0 ? [] : Partition(text, parseSpecial);
        if (addSpecial && AddsBos)
        {
            if (BosId == Null) throw new BupoException("the vocabulary asks for BOS but has no BOS token");
            output.Add(BosId);
        }
        var afterSpecial = true;
        foreach (var frag in fragments)
        {
            fragmentTokens?.Add(new FragmentTokens(frag, output.Count, afterSpecial));
            if (frag.IsText)
            {
                EncodeText(text.AsSpan(frag.Offset, frag.Length), afterSpecial, output);
                afterSpecial = false;
            }
            else
            {
                output.Add(frag.Token);
                afterSpecial = true;
            }
        }
        if (addSpecial && AddsEos)
        {
            if (EosId == Null) throw new BupoException("the vocabulary asks for EOS but has no EOS token");
            output.Add(EosId);
        }
    }

    // tokenizer_st_partition: split out special tokens, longest first
    private List<Fragment> Partition(string text, bool parseSpecial)
    {
        var buffer = new List<Fragment> { new(Null, 0, text.Length) };
        var search = parseSpecial ? _vocab.SpecialSearchAll : _vocab.SpecialSearchUser;
        if (search == null || text.AsSpan().IndexOfAny(search) < 0) return buffer;
        var pieces = new List<Fragment>();
        foreach (var special in _vocab.SpecialTokens)
        {
            var attr = _attrs[special];
            if (!parseSpecial && (attr & SpecialAttrs) != 0) continue;
            var st = _texts[special];
            if (!text.Contains(st, StringComparison.Ordinal)) continue;
            for (var i = 0; i < buffer.Count; i++)
            {
                var frag = buffer[i];
                if (!frag.IsText) continue;
                pieces.Clear();
                int off = frag.Offset, len = frag.Length;
                var matched = false;
                while (true)
                {
                    var match = len > 0 ? text.IndexOf(st, off, len, StringComparison.Ordinal) : -1;
                    if (match < 0)
                    {
                        if (len > 0) pieces.Add(new(Null, off, len));
                        break;
                    }
                    matched = true;
                    var leftLen = match - off;
                    if ((attr & LlamaTokenAttributes.LStrip) != 0)
                        while (leftLen > 0 && LlamaUnicode.IsCSpace(text[off + leftLen - 1])) leftLen--;
                    if (leftLen > 0) pieces.Add(new(Null, off, leftLen));
                    pieces.Add(new(special, match, st.Length)); // the offset and length of a special token serve EncodeToTokens only
                    var rightOff = match + st.Length;
                    var rightLen = off + len - rightOff;
                    if (rightLen <= 0) break;
                    if ((attr & LlamaTokenAttributes.RStrip) != 0)
                        while (rightLen > 0 && LlamaUnicode.IsCSpace(text[rightOff])) { rightOff++; rightLen--; }
                    off = rightOff;
                    len = rightLen;
                }
                if (!matched) continue;
                buffer.RemoveAt(i);
                buffer.InsertRange(i, pieces);
                i += pieces.Count - 1;
            }
        }
        return buffer;
    }

    // ---------------------------------------------------------------------------------------------------
    // Microsoft.ML.Tokenizers
    // ---------------------------------------------------------------------------------------------------

    private static string TextOf(string? text, ReadOnlySpan<char> textSpan) => LlamaUnicode.Sanitize(text ?? textSpan.ToString());

    /// <summary>The ids of <see cref="Encode"/> (addSpecial, not parseSpecial) with the characters of the text each one covers.</summary>
    private List<EncodedToken> EncodeWithOffsets(string text)
    {
        var ids = new List<int>(text.Length / 3 + 4);
        var fragments = new List<FragmentTokens>();
        EncodeSanitized(text, addSpecial: true, parseSpecial: false, ids, fragments);
        var tokens = new List<EncodedToken>(ids.Count);
        var next = 0;
        void Add(int id, int start, int end) => tokens.Add(new EncodedToken(id, _texts[id], new Range(start, end)));
        for (var f = 0; f < fragments.Count; f++)
        {
            var (frag, first, afterSpecial) = fragments[f];
            for (; next < first; next++) Add(ids[next], frag.Offset, frag.Offset); // BOS: empty, before the text
            var end = f + 1 < fragments.Count ? fragments[f + 1].FirstToken : ids.Count - (AddsEos ? 1 : 0);
            if (!frag.IsText)
            {
                Add(ids[next++], frag.Offset, frag.Offset + frag.Length);
                continue;
            }
            // the pieces of a fragment's tokens spell its UTF-8 bytes (after SPM's dummy-prefix space): walk them
            var span = text.AsSpan(frag.Offset, frag.Length);
            var byteStart = new int[span.Length + 1]; // UTF-8 offset of each char (a low surrogate shares its pair's)
            for (var i = 0; i < span.Length; i++)
            {
                var width = char.IsHighSurrogate(span[i]) && i + 1 < span.Length && char.IsLowSurrogate(span[i + 1]) ? 4
                    : span[i] < 0x80 ? 1 : span[i] < 0x800 ? 2 : 3;
                byteStart[i + 1] = byteStart[i] + (width == 4 ? 0 : width);
                if (width == 4) { byteStart[i + 2] = byteStart[i] + 4; i++; }
            }
            var bytePos = PrefixesSpace(afterSpecial) ? -1 : 0;
            for (; next < end; next++)
            {
                var id = ids[next];
                var startByte = bytePos;
                bytePos += _pieces[id].Length;
                Add(id, frag.Offset + CharAt(byteStart, startByte, ceiling: false), frag.Offset + CharAt(byteStart, bytePos, ceiling: true));
            }
        }
        for (; next < ids.Count; next++) Add(ids[next], text.Length, text.Length); // BOS of an empty text, EOS
        return tokens;
    }

    // the char that holds UTF-8 byte b (ceiling: the first char boundary at or after b), clamped to the fragment
    private static int CharAt(int[] byteStart, int b, bool ceiling)
    {
        var chars = byteStart.Length - 1;
        if (b <= 0) return 0;
        if (b >= byteStart[chars]) return chars;
        var i = Array.BinarySearch(byteStart, b);
        if (i >= 0)
        {
            while (i > 0 && byteStart[i - 1] == b) i--; // a surrogate pair's low half repeats its start
            return i;
        }
        i = ~i; // first boundary after b
        return ceiling ? i : i - 1;
    }

    /// <summary>How many of <paramref name="tokens"/> fit in <paramref name="max"/> without cutting a character between two tokens.</summary>
    private static int FittingCount(List<EncodedToken> tokens, int max, bool fromEnd)
    {
        if (max >= tokens.Count) return tokens.Count;
        var k = Math.Max(max, 0);
        if (!fromEnd)
            while (k > 0 && tokens[k].Offset.Start.Value < tokens[k - 1].Offset.End.Value) k--;
        else
            while (k > 0 && tokens[^k].Offset.Start.Value < tokens[^(k + 1)].Offset.End.Value) k--;
        return k;
    }

    /// <summary>
    /// Encodes as <see cref="Encode"/> with <c>addSpecial = true, parseSpecial = false</c>; each token's value is its
    /// vocabulary text and its offset the characters it covers (BOS and EOS cover none). With a
    /// <see cref="EncodeSettings.MaxTokenCount"/>, the tokens are cut where no character is shared by two tokens.
    /// </summary>
    protected override EncodeResults<EncodedToken> EncodeToTokens(string? text, ReadOnlySpan<char> textSpan, EncodeSettings settings)
    {
        var s = TextOf(text, textSpan);
        var tokens = EncodeWithOffsets(s);
        var k = FittingCount(tokens, settings.MaxTokenCount, fromEnd: false);
        var consumed = k == tokens.Count ? s.Length : k == 0 ? 0 : tokens[k - 1].Offset.End.Value;
        tokens.RemoveRange(k, tokens.Count - k);
        return new EncodeResults<EncodedToken> { Tokens = tokens, NormalizedText = null, CharsConsumed = consumed };
    }

    /// <summary>The ids of <see cref="Encode"/> with <c>addSpecial = true, parseSpecial = false</c> (cut as <see cref="EncodeToTokens(string?, ReadOnlySpan{char}, EncodeSettings)"/> cuts).</summary>
    protected override EncodeResults<int> EncodeToIds(string? text, ReadOnlySpan<char> textSpan, EncodeSettings settings)
    {
        var s = TextOf(text, textSpan);
        if (settings.MaxTokenCount == int.MaxValue)
            return new EncodeResults<int> { Tokens = EncodeSanitizedIds(s), NormalizedText = null, CharsConsumed = s.Length };
        var tokens = EncodeToTokens(s, s, settings);
        return new EncodeResults<int> { Tokens = tokens.Tokens.Select(t => t.Id).ToList(), NormalizedText = null, CharsConsumed = tokens.CharsConsumed };
    }

    private List<int> EncodeSanitizedIds(string sanitized)
    {
        var ids = new List<int>(sanitized.Length / 3 + 4);
        EncodeSanitized(sanitized, addSpecial: true, parseSpecial: false, ids, null);
        return ids;
    }

    /// <summary>The number of ids <see cref="Encode"/> gives with <c>addSpecial = true, parseSpecial = false</c>.</summary>
    protected override int CountTokens(string? text, ReadOnlySpan<char> textSpan, EncodeSettings settings)
    {
        var count = EncodeSanitizedIds(TextOf(text, textSpan)).Count;
        return Math.Min(count, settings.MaxTokenCount);
    }

    /// <summary>
    /// From the start: the index just after the last character of the longest prefix whose tokens number at most
    /// <see cref="EncodeSettings.MaxTokenCount"/>; from the end: the index of the first character of the longest such
    /// suffix. Cuts fall where no character is shared by two tokens.
    /// </summary>
    protected override int GetIndexByTokenCount(string? text, ReadOnlySpan<char> textSpan, EncodeSettings settings, bool fromEnd,
        out string? normalizedText, out int tokenCount)
    {
        var s = TextOf(text, textSpan);
        var tokens = EncodeWithOffsets(s);
        normalizedText = null;
        tokenCount = FittingCount(tokens, settings.MaxTokenCount, fromEnd);
        if (tokenCount == tokens.Count) return fromEnd ? 0 : s.Length;
        if (!fromEnd) return tokenCount == 0 ? 0 : tokens[tokenCount - 1].Offset.End.Value;
        return tokenCount == 0 ? s.Length : tokens[^tokenCount].Offset.Start.Value;
    }

    /// <summary>The text of <see cref="Decode(ReadOnlySpan{int}, bool, bool)"/> with its defaults (as llama_detokenize).</summary>
    public override string Decode(IEnumerable<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        return Decode(ids.ToArray().AsSpan());
    }

    /// <summary>
    /// Writes the text of <see cref="Decode(IEnumerable{int})"/> into <paramref name="destination"/>; when it does not fit,
    /// the text of the longest prefix of the ids that fits, with <see cref="OperationStatus.DestinationTooSmall"/>.
    /// An id outside the vocabulary gives <see cref="OperationStatus.InvalidData"/> and writes nothing.
    /// </summary>
    public override OperationStatus Decode(IEnumerable<int> ids, Span<char> destination, out int idsConsumed, out int charsWritten)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var all = ids.ToArray();
        idsConsumed = 0;
        charsWritten = 0;
        foreach (var id in all)
            if ((uint)id >= (uint)_texts.Length) return OperationStatus.InvalidData;
        var full = Decode(all.AsSpan());
        if (full.Length <= destination.Length)
        {
            full.CopyTo(destination);
            (idsConsumed, charsWritten) = (all.Length, full.Length);
            return OperationStatus.Done;
        }
        // the longest prefix that fits: the decoded length grows with the prefix (bar clean-up passes), so search
        int lo = 0, hi = all.Length - 1;
        var best = "";
        while (lo <= hi)
        {
            var mid = (lo + hi) / 2;
            var t = Decode(all.AsSpan(0, mid));
            if (t.Length <= destination.Length) { lo = mid + 1; idsConsumed = mid; best = t; }
            else hi = mid - 1;
        }
        best.CopyTo(destination);
        charsWritten = best.Length;
        return OperationStatus.DestinationTooSmall;
    }

    // ---------------------------------------------------------------------------------------------------
    // Decode
    // ---------------------------------------------------------------------------------------------------

    /// <inheritdoc/>
    public string Decode(ReadOnlySpan<int> ids, bool removeSpecial = false, bool unparseSpecial = false)
    {
        var bytes = DecodeToBytes(ids, removeSpecial, unparseSpecial);
        return Encoding.UTF8.GetString(bytes);
    }

    /// <summary>llama_detokenize's bytes (the text may end inside a UTF-8 sequence).</summary>
    public byte[] DecodeToBytes(ReadOnlySpan<int> ids, bool removeSpecial = false, bool unparseSpecial = false)
    {
        var removeSpace = _vocab.AddSpacePrefix;
        if (removeSpecial && AddsBos && ids.Length > 0 && ids[0] == BosId)
        {
            removeSpace = false;
            ids = ids[1..];
        }
        if (removeSpecial && AddsEos && ids.Length > 0 && ids[^1] == EosId) ids = ids[..^1];

        var total = 0;
        foreach (var id in ids) total += _pieces[CheckId(id)].Length;
        var text = new byte[total];
        total = 0;
        foreach (var id in ids)
        {
            var lstrip = removeSpace;
            removeSpace = false;
            if (!unparseSpecial && (_attrs[id] & SpecialAttrs) != 0) continue;
            var piece = _pieces[id].AsSpan();
            if (lstrip && piece.Length > 0 && piece[0] == (byte)' ') piece = piece[1..];
            piece.CopyTo(text.AsSpan(total));
            total += piece.Length;
        }
        if (_vocab.CleanSpaces) total = CleanSpaces(text, total);
        return total == text.Length ? text : text[..total];
    }

    // detokenize's clean_spaces passes, ported as they are (in place, on bytes)
    private static int CleanSpaces(byte[] text, int total)
    {
        // first pass: " ?", " !", " .", " ,"
        var total1 = total;
        total = total > 0 ? 1 : 0;
        for (var i = 1; i < total1; i++)
        {
            var x = text[i];
            if (text[i - 1] == ' ' && x is (byte)'?' or (byte)'!' or (byte)'.' or (byte)',') total--;
            text[total++] = x;
        }
        // second pass: strip single apostrophe between spaces
        var total2 = total;
        total = total > 0 ? 1 : 0;
        for (var i = 1; i < total2; i++)
        {
            var x = text[i];
            if (x == '\'' && i + 1 < total2 && text[i - 1] == ' ' && text[i + 1] == ' ')
            {
                total--;
                text[++i] = 0;
            }
            text[total++] = x;
        }
        // third pass: apostrophe contractions
        var total3 = total;
        total = total > 0 ? 1 : 0;
        for (var i = 1; i < total3; i++)
        {
            var x = text[i];
            if (text[i - 1] == ' ' && x == '\'' && i + 1 < total3)
            {
                var x1 = text[i + 1];
                if (x1 is (byte)'t' or (byte)'d') { }
                else if (x1 is (byte)'s' or (byte)'m') total--;
                else if (i + 2 < total3)
                {
                    var x2 = text[i + 2];
                    if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e')) total--;
                }
            }
            text[total++] = x;
        }
        return total;
    }
}
