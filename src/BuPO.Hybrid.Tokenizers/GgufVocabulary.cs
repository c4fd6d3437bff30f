using System.Buffers;
using System.Text;
using BuPO.Hybrid.Gguf;

namespace BuPO.Hybrid.Tokenizers;

/// <summary>
/// The part of a GGUF tokenizer that SentencePiece and BPE share, read as llama.cpp's <c>llama_vocab::impl::load</c>
/// reads it: token texts, scores and attributes (with llama.cpp's by-text and by-model adjustments), the special
/// token ids, the end-of-generation set, the special tokens split out of text, and each token's piece.
/// </summary>
/// <remarks>Immutable once built; the tokenizers read its arrays directly.</remarks>
internal sealed class GgufVocabulary
{
    internal const int Null = -1;
    internal const LlamaTokenAttributes SpecialAttrs = LlamaTokenAttributes.Unknown | LlamaTokenAttributes.Control;

    private readonly string[] _texts;
    private readonly float[] _scores;
    private readonly LlamaTokenAttributes[] _attrs;
    private readonly Dictionary<string, int> _tokenToId;
    private readonly bool[] _eog;
    private readonly int[] _eogIds;
    private readonly int[] _specialTokens; // cache_special_tokens: control, user-defined and unknown tokens, longest first
    private readonly byte[][] _pieces;     // llama_token_to_piece(special = true)

    /// <summary>The file the vocabulary came from (for messages).</summary>
    public string Path { get; }

    /// <summary>tokenizer.ggml.model.</summary>
    public string Model { get; }

    /// <summary>tokenizer.ggml.pre ("" when absent).</summary>
    public string PreTokenizerName { get; }

    /// <summary>Token texts by id (empty texts as [EMPTY_id], as llama.cpp names them).</summary>
    public string[] Texts => _texts;

    /// <summary>Token scores by id (0 when the vocabulary has none).</summary>
    public float[] Scores => _scores;

    /// <summary>Token attributes by id, after llama.cpp's adjustments.</summary>
    public LlamaTokenAttributes[] Attributes => _attrs;

    /// <summary>Token id by text (the last of equal texts, as llama.cpp's map keeps).</summary>
    public Dictionary<string, int> TokenToId => _tokenToId;

    /// <summary><see cref="TokenToId"/> by span.</summary>
    public Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> TokenLookup { get; }

    /// <summary>Token pieces (llama_token_to_piece with special = true) by id.</summary>
    public byte[][] Pieces => _pieces;

    /// <summary>Special tokens (control, user-defined, unknown), longest first in UTF-8 bytes.</summary>
    public int[] SpecialTokens => _specialTokens;

    /// <summary>Texts of all special tokens, or null when there are none.</summary>
    public SearchValues<string>? SpecialSearchAll { get; }

    /// <summary>Texts of the special tokens recognized without parseSpecial (user-defined), or null.</summary>
    public SearchValues<string>? SpecialSearchUser { get; }

    /// <summary>Beginning-of-sequence id, or -1.</summary>
    public int BosId { get; }

    /// <summary>End-of-sequence id, or -1.</summary>
    public int EosId { get; }

    /// <summary>End-of-turn id, or -1.</summary>
    public int EotId { get; }

    /// <summary>tokenizer.ggml.add_bos_token, else the model's default.</summary>
    public bool AddsBos { get; }

    /// <summary>tokenizer.ggml.add_eos_token, else false.</summary>
    public bool AddsEos { get; }

    /// <summary>tokenizer.ggml.add_space_prefix, else the model's default (SPM: true).</summary>
    public bool AddSpacePrefix { get; }

    /// <summary>Whether detokenizing applies llama.cpp's clean_spaces passes (by pre-tokenizer type).</summary>
    public bool CleanSpaces { get; }

    /// <summary>Tokens that end generation, ascending.</summary>
    public int[] EndOfGenerationIds => _eogIds;

    /// <summary>True for the ids in <see cref="EndOfGenerationIds"/>.</summary>
    public bool IsEndOfGeneration(int id) => (uint)id < (uint)_eog.Length && _eog[id];

    /// <summary>Reads a string metadata value ("" when absent); a value of another type is a <see cref="BupoException"/>.</summary>
    internal static string ReadString(GgufFile f, string key) => Read(f, key, () => f.GetString(key)) ?? "";

    /// <summary>Reads one metadata value (null when absent); a value of the wrong type is a <see cref="BupoException"/> naming the key.</summary>
    internal static T? Read<T>(GgufFile f, string key, Func<T?> get)
    {
        try { return get(); }
        catch (Exception e) when (e is InvalidCastException or GgufFormatException) { throw new BupoException($"{f.Path}: metadata '{key}' has the wrong type ({e.Message})"); }
    }

    /// <summary>Reads the vocabulary of <paramref name="f"/>, starting from the tokenizer model's <paramref name="defaults"/>.</summary>
    /// <exception cref="BupoException">The vocabulary is malformed.</exception>
    public GgufVocabulary(GgufFile f, GgufVocabularyDefaults defaults)
    {
        ArgumentNullException.ThrowIfNull(f);
        ArgumentNullException.ThrowIfNull(defaults);
        var path = f.Path;
        Path = path;
        string Str(string key) => ReadString(f, key);
        T? Try<T>(string key, Func<T?> get) => Read(f, key, get);
        Model = Str("tokenizer.ggml.model");
        PreTokenizerName = Str("tokenizer.ggml.pre");
        CleanSpaces = defaults.CleanSpaces;

        int bos = defaults.Bos, eos = defaults.Eos, eot = Null, eom = Null, unk = defaults.Unknown, sep = Null, pad = Null, mask = Null;
        int fimPre = Null, fimSuf = Null, fimMid = Null, fimPad = Null, fimRep = Null, fimSep = Null;
        var addPrefix = Try("tokenizer.ggml.add_space_prefix", () => f.GetBool("tokenizer.ggml.add_space_prefix"));
        AddSpacePrefix = addPrefix ?? defaults.AddSpacePrefix;

        // tokens, scores, types
        var tokens = Try("tokenizer.ggml.tokens", () => f.GetArray("tokenizer.ggml.tokens"))?.Items as string[]
            ?? throw new BupoException($"{path}: tokenizer.ggml.tokens is missing or not a string array");
        var n = tokens.Length;
        _texts = new string[n];
        _scores = new float[n];
        _attrs = new LlamaTokenAttributes[n];
        var scoresArr = Try("tokenizer.ggml.scores", () => f.GetArray("tokenizer.ggml.scores"));
        if (scoresArr != null && scoresArr.Items is not (float[] or int[]))
            throw new BupoException($"{path}: tokenizer.ggml.scores must be a float32 or int32 array, found {scoresArr.ElementType}");
        if (scoresArr != null && scoresArr.Count < n)
            throw new BupoException($"{path}: tokenizer.ggml.scores has {scoresArr.Count} entries for {n} tokens");
        var types = Try("tokenizer.ggml.token_type", () => f.GetArray("tokenizer.ggml.token_type"));
        if (types != null && types.Items is not int[])
            throw new BupoException($"{path}: tokenizer.ggml.token_type must be an int32 array, found {types.ElementType}");
        if (types != null && types.Count < n)
            throw new BupoException($"{path}: tokenizer.ggml.token_type has {types.Count} entries for {n} tokens");
        var typeIds = types?.Items as int[];
        _tokenToId = new Dictionary<string, int>(n, StringComparer.Ordinal);
        for (var i = 0; i < n; i++)
        {
            var word = string.IsNullOrEmpty(tokens[i]) ? $"[EMPTY_{i}]" : tokens[i];
            _tokenToId[word] = i;
            _texts[i] = word;
            _scores[i] = scoresArr?.Items switch { float[] fs => fs[i], int[] ints => ints[i], _ => 0f };
            _attrs[i] = typeIds == null ? LlamaTokenAttributes.Normal : typeIds[i] switch
            {
                1 => LlamaTokenAttributes.Normal,
                2 => LlamaTokenAttributes.Unknown,
                3 => LlamaTokenAttributes.Control,
                4 => LlamaTokenAttributes.UserDefined,
                5 => LlamaTokenAttributes.Unused,
                6 => LlamaTokenAttributes.Byte,
                _ => LlamaTokenAttributes.Undefined,
            };
        }
        TokenLookup = _tokenToId.GetAlternateLookup<ReadOnlySpan<char>>();

        // special token ids: per-model defaults, then metadata (ids outside the vocabulary are ignored, as llama.cpp does)
        int Special(string key, int current)
        {
            if (current >= n) current = Null;
            var v = Try(key, () => f.GetInt(key));
            return v is { } id && id >= 0 && id < n ? (int)id : current;
        }
        bos = Special("tokenizer.ggml.bos_token_id", bos);
        eos = Special("tokenizer.ggml.eos_token_id", eos);
        eot = Special("tokenizer.ggml.eot_token_id", eot);
        eom = Special("tokenizer.ggml.eom_token_id", eom);
        unk = Special("tokenizer.ggml.unknown_token_id", unk);
        sep = Special("tokenizer.ggml.seperator_token_id", sep);
        pad = Special("tokenizer.ggml.padding_token_id", pad);
        mask = Special("tokenizer.ggml.mask_token_id", mask);
        fimPre = Special("tokenizer.ggml.fim_pre_token_id", fimPre);
        fimSuf = Special("tokenizer.ggml.fim_suf_token_id", fimSuf);
        fimMid = Special("tokenizer.ggml.fim_mid_token_id", fimMid);
        fimPad = Special("tokenizer.ggml.fim_pad_token_id", fimPad);
        fimRep = Special("tokenizer.ggml.fim_rep_token_id", fimRep);
        fimSep = Special("tokenizer.ggml.fim_sep_token_id", fimSep);
        fimPre = Special("tokenizer.ggml.prefix_token_id", fimPre);
        fimSuf = Special("tokenizer.ggml.suffix_token_id", fimSuf);
        fimMid = Special("tokenizer.ggml.middle_token_id", fimMid);
        _ = (unk, sep, pad, mask);

        var addBos = Try("tokenizer.ggml.add_bos_token", () => f.GetBool("tokenizer.ggml.add_bos_token")) ?? defaults.AddBos;
        var addEos = Try("tokenizer.ggml.add_eos_token", () => f.GetBool("tokenizer.ggml.add_eos_token")) ?? defaults.AddEos;

        // auto-detect special tokens by text. llama.cpp walks its token_to_id hash map here, so with several
        // candidates for one role the pick follows the STL's hash order; we take the first candidate in llama.cpp's
        // list that the vocabulary has (this gives <|im_end|> over <|endoftext|> for EOT, as llama.cpp does on qwen2)
        int Detect(int current, params string[] candidates)
        {
            if (current != Null) return current;
            foreach (var c in candidates)
            {
                if (!_tokenToId.TryGetValue(c, out var id)) continue;
                _attrs[id] |= LlamaTokenAttributes.Control;
                return id;
            }
            return Null;
        }
        eot = Detect(eot, "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>", "_<EOT>",
            "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>");
        eom = Detect(eom, "<|eom_id|>");
        fimPre = Detect(fimPre, "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>", "<|prefix|>");
        fimSuf = Detect(fimSuf, "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>", "<|suffix|>");
        fimMid = Detect(fimMid, "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>", "<|middle|>");
        fimPad = Detect(fimPad, "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]");
        fimRep = Detect(fimRep, "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>");
        fimSep = Detect(fimSep, "<|file_sep|>");
        // unused control tokens
        for (var id = 0; id < n; id++)
            if ((_attrs[id] & LlamaTokenAttributes.Control) != 0 && _tokenToId[_texts[id]] == id && _texts[id].Contains("unused", StringComparison.Ordinal))
                _attrs[id] |= LlamaTokenAttributes.Unused;

        // end-of-generation tokens
        var eog = new SortedSet<int>();
        if (fimPad != Null) eog.Add(fimPad);
        if (fimRep != Null) eog.Add(fimRep);
        if (fimSep != Null) eog.Add(fimSep);
        for (var id = 0; id < n; id++)
        {
            var t = _texts[id];
            if (_tokenToId[t] != id) continue;
            if (t is "<|eot_id|>" or "<|im_end|>" or "<|end|>" or "<|return|>" or "<|call|>" or "<|flush|>" or "<|calls|>" or "<end_of_turn>"
                or "<|endoftext|>" or "</s>" or "<|eom_id|>" or "<EOT>" or "_<EOT>" or "[EOT]" or "[EOS]" or "<|end_of_text|>"
                or "<end_of_utterance>" or "<eos>" or "<turn|>" or "<|tool_response>" or "<｜end▁of▁sentence｜>" or "[e~[")
            {
                eog.Add(id);
                _attrs[id] |= LlamaTokenAttributes.Control;
            }
        }
        // gpt-oss: always render these
        for (var id = 0; id < n; id++)
            if (_tokenToId[_texts[id]] == id && _texts[id] is "<|channel|>" or "<|message|>" or "<|start|>" or "<|constrain|>")
                _attrs[id] = LlamaTokenAttributes.UserDefined;
        if (eos != Null) eog.Add(eos);
        if (eot != Null) eog.Add(eot);
        if (eom != Null) eog.Add(eom);
        {
            bool hasReturn = false, hasCall = false, hasEnd = false, hasFlush = false;
            var endId = Null;
            foreach (var id in eog)
            {
                switch (_texts[id])
                {
                    case "<|return|>": hasReturn = true; break;
                    case "<|call|>" or "<|calls|>": hasCall = true; break;
                    case "<|flush|>": hasFlush = true; break;
                    case "<|end|>": hasEnd = true; endId = id; break;
                }
            }
            if ((hasReturn && hasCall && hasEnd) || (hasCall && hasFlush && hasEnd))
            {
                eog.Remove(endId);
                _attrs[endId] = LlamaTokenAttributes.UserDefined;
            }
        }
        {
            var hasToolResponse = false;
            var sId = Null;
            foreach (var id in eog)
            {
                if (_texts[id] == "<|tool_response>") hasToolResponse = true;
                else if (_texts[id] == "</s>") sId = id;
            }
            if (hasToolResponse && sId != Null)
            {
                eog.Remove(sId);
                _attrs[sId] = LlamaTokenAttributes.Normal;
            }
        }
        _eogIds = eog.ToArray();
        _eog = new bool[n];
        foreach (var id in _eogIds) _eog[id] = true;

        // special tokens cache: longest (in UTF-8 bytes) first
        var specials = new List<int>();
        for (var id = 0; id < n; id++)
            if ((_attrs[id] & (LlamaTokenAttributes.Control | LlamaTokenAttributes.UserDefined | LlamaTokenAttributes.Unknown)) != 0)
                specials.Add(id);
        _specialTokens = specials
            .OrderByDescending(id => Encoding.UTF8.GetByteCount(_texts[id]))
            .ThenBy(id => id)
            .ToArray();
        var allTexts = _specialTokens.Select(id => _texts[id]).Distinct(StringComparer.Ordinal).ToArray();
        var userTexts = _specialTokens.Where(id => (_attrs[id] & SpecialAttrs) == 0).Select(id => _texts[id]).Distinct(StringComparer.Ordinal).ToArray();
        SpecialSearchAll = allTexts.Length > 0 ? SearchValues.Create(allTexts, StringComparison.Ordinal) : null;
        SpecialSearchUser = userTexts.Length > 0 ? SearchValues.Create(userTexts, StringComparison.Ordinal) : null;

        // token pieces (llama_token_to_piece with special = true)
        _pieces = new byte[n][];
        for (var id = 0; id < n; id++) _pieces[id] = BuildPiece(id, defaults.TextForm);

        // per-model token attributes llama.cpp sets by name
        ApplyNamedAttributes(f);

        BosId = bos;
        EosId = eos;
        EotId = eot;
        AddsBos = addBos;
        AddsEos = addEos;
    }

    private byte[] BuildPiece(int id, TokenTextForm form)
    {
        var attr = _attrs[id];
        var text = _texts[id];
        if ((attr & (SpecialAttrs | LlamaTokenAttributes.UserDefined)) != 0) return Encoding.UTF8.GetBytes(text);
        if ((attr & LlamaTokenAttributes.Normal) != 0)
        {
            if (form == TokenTextForm.SentencePiece) return Encoding.UTF8.GetBytes(text.Replace('\u2581', ' '));
            return DecodeByteLevel(text);
        }
        if ((attr & LlamaTokenAttributes.Byte) != 0)
        {
            // token_to_byte: strtol(text.substr(3, 2), 16)
            var hex = text.Length > 3 ? text.Substring(3, Math.Min(2, text.Length - 3)) : "";
            var value = 0;
            foreach (var ch in hex)
            {
                var d = HexDigit(ch);
                if (d < 0) break;
                value = value * 16 + d;
            }
            return [(byte)value];
        }
        return [];
    }

    private static int HexDigit(char c) => c switch
    {
        >= '0' and <= '9' => c - '0',
        >= 'a' and <= 'f' => c - 'a' + 10,
        >= 'A' and <= 'F' => c - 'A' + 10,
        _ => -1,
    };

    // llama_decode_text: byte-level chars back to bytes; unknown chars as "[UNK_BYTE_0x..<text>]"
    private static byte[] DecodeByteLevel(string text)
    {
        var fast = new byte[text.Length];
        var i0 = 0;
        for (; i0 < text.Length; i0++)
        {
            var c = text[i0];
            if (c >= LlamaUnicode.CharToByte.Length || LlamaUnicode.CharToByte[c] < 0) break;
            fast[i0] = (byte)LlamaUnicode.CharToByte[c];
        }
        if (i0 == text.Length) return fast;
        var bytes = new List<byte>(text.Length);
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            if (c < LlamaUnicode.CharToByte.Length && LlamaUnicode.CharToByte[c] >= 0)
            {
                bytes.Add((byte)LlamaUnicode.CharToByte[c]);
                continue;
            }
            var len = char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]) ? 2 : 1;
            var utf8 = Encoding.UTF8.GetBytes(text.Substring(i, len));
            i += len - 1;
            var sb = new StringBuilder("[UNK_BYTE_0x");
            foreach (var b in utf8) sb.Append(b.ToString("x2", System.Globalization.CultureInfo.InvariantCulture));
            sb.Append(text).Append(']');
            bytes.AddRange(Encoding.UTF8.GetBytes(sb.ToString()));
        }
        return bytes.ToArray();
    }

    private void ApplyNamedAttributes(GgufFile f)
    {
        string Get(string key) { try { return f.GetString(key) ?? ""; } catch (InvalidCastException) { return ""; } }
        var name = Get("general.name").ToLowerInvariant();
        var pre = Get("tokenizer.ggml.pre");
        var arch = Get("general.architecture");
        void Set(string token, LlamaTokenAttributes attr, bool on)
        {
            if (!_tokenToId.TryGetValue(token, out var id)) return;
            _attrs[id] = on ? _attrs[id] | attr : _attrs[id] & ~attr;
        }
        if (new[] { "jina-v2-de", "jina-v2-es", "jina-v2-code" }.Any(pre.Contains) || new[] { "nomic-bert-moe", "jina-bert-v3" }.Any(arch.Contains))
        {
            Set("<mask>", LlamaTokenAttributes.LStrip, true);
        }
        else if (name.Contains("phi-3") || name.Contains("phi3"))
        {
            foreach (var id in _specialTokens) _attrs[id] |= LlamaTokenAttributes.RStrip;
            Set("</s>", LlamaTokenAttributes.RStrip, true);
            foreach (var t in new[] { "<unk>", "<s>", "<|endoftext|>" }) Set(t, LlamaTokenAttributes.RStrip, false);
        }
        else if (name.Contains("modern-bert"))
        {
            Set("[MASK]", LlamaTokenAttributes.LStrip, true);
        }
    }

}
