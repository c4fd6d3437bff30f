using System.Buffers;
using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Text;
using BuPO.Hybrid.Gguf;

namespace BuPO.Hybrid.Tokenizers;

/// <summary>
/// A managed port of llama.cpp's tokenizer (src/llama-vocab.cpp), built from the vocabulary in a GGUF file and
/// giving the same ids as <c>llama_tokenize</c> and the same text as <c>llama_detokenize</c>:
/// byte-level BPE (<c>tokenizer.ggml.model = gpt2</c>, with the pre-tokenizer named by <c>tokenizer.ggml.pre</c>)
/// and SentencePiece-style vocabularies (<c>llama</c>: score-driven merges, byte fallback).
/// </summary>
/// <remarks>
/// The BPE merge loop is our own rather than Microsoft.ML.Tokenizers': llama.cpp ranks merges by the texts of
/// the two symbols (a merge may produce a string that is not a token), falls back to single ASCII bytes for
/// such strings and splits text with its own codepoint tables; reproducing that exactly is simpler here.
/// Instances are immutable apart from a bounded, thread-safe cache of pre-token results: safe to share.
/// </remarks>
public sealed class GgufTokenizer : ITextTokenizer
{
    private const int Null = -1;
    private const int MaxCachedWordLength = 64;
    private const int MaxCacheEntries = 1 << 16;
    private const int NaiveMergeLimit = 48;
    private const LlamaTokenAttributes SpecialAttrs = LlamaTokenAttributes.Unknown | LlamaTokenAttributes.Control;

    private readonly bool _isSpm;
    private readonly string[] _texts;
    private readonly float[] _scores;
    private readonly LlamaTokenAttributes[] _attrs;
    private readonly Dictionary<string, int> _tokenToId;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _tokenLookup;
    private readonly bool[] _eog;
    private readonly int[] _eogIds;
    private readonly int[] _specialTokens; // cache_special_tokens: control, user-defined and unknown tokens, longest first
    private readonly SearchValues<string>? _specialSearchAll, _specialSearchUser;
    private readonly byte[][] _pieces;     // llama_token_to_piece(special = true)
    private readonly bool _addSpacePrefix, _addEos, _cleanSpaces;

    // byte-level BPE
    private readonly LlamaPreTokenizer? _pre;
    private readonly bool _ignoreMerges;
    private readonly Dictionary<long, long> _merges = new();   // (left symbol, right symbol) -> (rank, merged symbol)
    private readonly List<string> _extraSymbols = new();        // symbol texts that are not tokens (ids from VocabSize up)
    private readonly int[] _byteSymbols = new int[256];
    private readonly int[] _asciiTokens = new int[128];
    private readonly ConcurrentDictionary<string, int[]> _wordCache = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>> _wordCacheLookup;
    private int _wordCacheCount; // ConcurrentDictionary.Count takes every lock: count additions ourselves

    // SPM
    private readonly int[] _byteTokens = new int[256];

    /// <summary>tokenizer.ggml.model (gpt2 or llama).</summary>
    public string Model { get; }

    /// <summary>tokenizer.ggml.pre ("" when absent; SPM vocabularies have none).</summary>
    public string PreTokenizer { get; }

    /// <inheritdoc/>
    public int VocabSize => _texts.Length;

    /// <inheritdoc/>
    public int BosId { get; }

    /// <inheritdoc/>
    public int EosId { get; }

    /// <summary>End-of-turn token id (tokenizer.ggml.eot_token_id or found by its text), or -1.</summary>
    public int EotId { get; }

    /// <inheritdoc/>
    public bool AddsBos { get; }

    /// <summary>Whether EOS is appended when <c>addSpecial</c> is true (tokenizer.ggml.add_eos_token).</summary>
    public bool AddsEos => _addEos;

    /// <summary>Whether a space is put before the text (SPM; tokenizer.ggml.add_space_prefix).</summary>
    public bool AddsSpacePrefix => _addSpacePrefix;

    /// <summary>The tokens that end generation, ascending.</summary>
    public IReadOnlyList<int> EndOfGenerationIds => _eogIds;

    /// <summary>The <c>tokenizer.ggml.pre</c> names the managed tokenizer supports.</summary>
    public static IEnumerable<string> SupportedPreTokenizers => LlamaPreTypes.SupportedNames;

    /// <summary>Loads the tokenizer of a GGUF file (a vocab-only file or a full model).</summary>
    /// <exception cref="UnsupportedTokenizerException">The tokenizer model or pre-tokenizer is not implemented here.</exception>
    /// <exception cref="BupoException">The file is missing or its vocabulary is malformed.</exception>
    public static GgufTokenizer FromGguf(string path)
    {
        using var file = GgufFile.Open(path);
        return FromGguf(file);
    }

    /// <inheritdoc cref="FromGguf(string)"/>
    public static GgufTokenizer FromGguf(GgufFile file)
    {
        ArgumentNullException.ThrowIfNull(file);
        return new GgufTokenizer(file);
    }

    private GgufTokenizer(GgufFile f)
    {
        var path = f.Path;
        string Str(string key) => Try(key, () => f.GetString(key)) ?? "";
        T? Try<T>(string key, Func<T?> get)
        {
            try { return get(); }
            catch (Exception e) when (e is InvalidCastException or GgufFormatException) { throw new BupoException($"{path}: metadata '{key}' has the wrong type ({e.Message})"); }
        }

        Model = Try("tokenizer.ggml.model", () => f.GetString("tokenizer.ggml.model"))
            ?? throw new UnsupportedTokenizerException($"{path}: no tokenizer.ggml.model: the file has no vocabulary");
        PreTokenizer = Str("tokenizer.ggml.pre");

        int bos, eos, eot = Null, eom = Null, unk, sep = Null, pad = Null, mask = Null;
        int fimPre = Null, fimSuf = Null, fimMid = Null, fimPad = Null, fimRep = Null, fimSep = Null;
        bool addBos, addEos;
        LlamaPreTypes.PreType? preType = null;
        switch (Model)
        {
            case "llama":
                _isSpm = true;
                bos = 1; eos = 2; unk = 0;
                _addSpacePrefix = true; _cleanSpaces = false; addBos = true; addEos = false;
                break;
            case "gpt2":
                preType = LlamaPreTypes.Find(PreTokenizer);
                if (preType == null)
                {
                    var why = LlamaPreTypes.KnownUnsupported.Contains(PreTokenizer)
                        ? "not implemented by the managed tokenizer"
                        : "unknown to llama.cpp's tokenizer as well";
                    throw new UnsupportedTokenizerException(
                        $"{path}: unsupported pre-tokenizer '{PreTokenizer}' (tokenizer.ggml.pre) for tokenizer model 'gpt2': {why}");
                }
                bos = 11; eos = 11; unk = Null;
                _addSpacePrefix = false; _cleanSpaces = preType.CleanSpaces; addBos = preType.AddBos; addEos = false;
                _ignoreMerges = preType.IgnoreMerges;
                if (preType.NoBos) bos = Null;
                break;
            default:
                throw new UnsupportedTokenizerException(
                    $"{path}: unsupported tokenizer model '{Model}' (tokenizer.ggml.model); the managed tokenizer implements 'gpt2' (byte-level BPE) and 'llama' (SentencePiece)");
        }
        var addPrefix = Try("tokenizer.ggml.add_space_prefix", () => f.GetBool("tokenizer.ggml.add_space_prefix"));
        if (addPrefix.HasValue) _addSpacePrefix = addPrefix.Value;

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
        _tokenLookup = _tokenToId.GetAlternateLookup<ReadOnlySpan<char>>();
        _wordCacheLookup = _wordCache.GetAlternateLookup<ReadOnlySpan<char>>();

        if (_isSpm)
        {
            for (var b = 0; b < 256; b++)
            {
                if (_tokenToId.TryGetValue($"<0x{b:X2}>", out var id)) _byteTokens[b] = id;
                else _byteTokens[b] = b < 0x80 && _tokenToId.TryGetValue(((char)b).ToString(), out id) ? id : Null;
            }
        }
        else
        {
            _pre = LlamaPreTokenizer.FromExpressions(preType!.Expressions);
            LoadMerges(f, path);
        }

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

        addBos = Try("tokenizer.ggml.add_bos_token", () => f.GetBool("tokenizer.ggml.add_bos_token")) ?? addBos;
        addEos = Try("tokenizer.ggml.add_eos_token", () => f.GetBool("tokenizer.ggml.add_eos_token")) ?? addEos;

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
        _specialSearchAll = allTexts.Length > 0 ? SearchValues.Create(allTexts, StringComparison.Ordinal) : null;
        _specialSearchUser = userTexts.Length > 0 ? SearchValues.Create(userTexts, StringComparison.Ordinal) : null;

        // token pieces (llama_token_to_piece with special = true)
        _pieces = new byte[n][];
        for (var id = 0; id < n; id++) _pieces[id] = BuildPiece(id);

        // per-model token attributes llama.cpp sets by name
        ApplyNamedAttributes(f);

        BosId = bos;
        EosId = eos;
        EotId = eot;
        AddsBos = addBos;
        _addEos = addEos;
    }

    private void LoadMerges(GgufFile f, string path)
    {
        GgufArray? arr;
        try { arr = f.GetArray("tokenizer.ggml.merges"); }
        catch (InvalidCastException) { arr = null; }
        if (arr?.Items is not string[] merges)
            throw new BupoException($"{path}: tokenizer.ggml.merges is missing or not a string array (needed by tokenizer model 'gpt2')");
        var symbolIds = new Dictionary<string, int>(_tokenToId, StringComparer.Ordinal);
        var symbolLookup = symbolIds.GetAlternateLookup<ReadOnlySpan<char>>();
        int Intern(ReadOnlySpan<char> s)
        {
            if (symbolLookup.TryGetValue(s, out var id)) return id;
            id = _texts.Length + _extraSymbols.Count;
            var str = s.ToString();
            _extraSymbols.Add(str);
            symbolIds.Add(str, id);
            return id;
        }
        for (var b = 0; b < 256; b++) _byteSymbols[b] = Intern([LlamaUnicode.ByteToChar[b]]);
        for (var c = 0; c < 128; c++) _asciiTokens[c] = _tokenToId.TryGetValue(((char)c).ToString(), out var id) ? id : Null;
        _merges.EnsureCapacity(merges.Length);
        var joined = new char[256];
        for (var rank = 0; rank < merges.Length; rank++)
        {
            var m = merges[rank].AsSpan();
            var space = m.Length > 1 ? m[1..].IndexOf(' ') + 1 : 0;
            if (space <= 0) continue; // llama.cpp records ("", ""), which never matches
            var first = m[..space];
            var second = m[(space + 1)..];
            if (first.Length == 0 || second.Length == 0) continue;
            var key = PairKey(Intern(first), Intern(second));
            if (_merges.ContainsKey(key)) continue; // emplace: the first rank of a pair wins
            if (joined.Length < m.Length) joined = new char[m.Length * 2];
            first.CopyTo(joined);
            second.CopyTo(joined.AsSpan(first.Length));
            _merges.Add(key, ((long)rank << 32) | (uint)Intern(joined.AsSpan(0, first.Length + second.Length)));
        }
    }

    private static long PairKey(int left, int right) => ((long)left << 32) | (uint)right;

    private byte[] BuildPiece(int id)
    {
        var attr = _attrs[id];
        var text = _texts[id];
        if ((attr & (SpecialAttrs | LlamaTokenAttributes.UserDefined)) != 0) return Encoding.UTF8.GetBytes(text);
        if ((attr & LlamaTokenAttributes.Normal) != 0)
        {
            if (_isSpm) return Encoding.UTF8.GetBytes(text.Replace('\u2581', ' '));
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

    /// <inheritdoc/>
    public bool IsEndOfGeneration(int id) => (uint)id < (uint)_eog.Length && _eog[id];

    /// <summary>The token's text as stored in the vocabulary (byte-level or ▁-escaped).</summary>
    public string GetTokenText(int id) => _texts[CheckId(id)];

    /// <summary>The token's attributes as llama.cpp sees them (after its by-text and by-model adjustments).</summary>
    public LlamaTokenAttributes GetAttributes(int id) => _attrs[CheckId(id)];

    /// <summary>The token's score (SPM merge priority; 0 when the vocabulary has none).</summary>
    public float GetScore(int id) => _scores[CheckId(id)];

    /// <summary>The id of a token text, or -1.</summary>
    public int TextToToken(string text) => _tokenToId.TryGetValue(text, out var id) ? id : Null;

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

    /// <inheritdoc/>
    public int[] Encode(string text, bool addSpecial = true, bool parseSpecial = false)
    {
        ArgumentNullException.ThrowIfNull(text);
        text = LlamaUnicode.Sanitize(text);
        var output = new List<int>(text.Length / 3 + 4);
        var fragments = text.Length == 0 ? [] : Partition(text, parseSpecial);
        if (_isSpm)
        {
            var isPrevSpecial = true;
            if (addSpecial && AddsBos)
            {
                if (BosId == Null) throw new BupoException("the vocabulary asks for BOS but has no BOS token");
                output.Add(BosId);
            }
            foreach (var frag in fragments)
            {
                if (frag.IsText)
                {
                    EncodeSpm(text.AsSpan(frag.Offset, frag.Length), _addSpacePrefix && isPrevSpecial, output);
                    isPrevSpecial = false;
                }
                else
                {
                    output.Add(frag.Token);
                    isPrevSpecial = true;
                }
            }
        }
        else
        {
            if (addSpecial && AddsBos)
            {
                if (BosId == Null) throw new BupoException("the vocabulary asks for BOS but has no BOS token");
                output.Add(BosId);
            }
            foreach (var frag in fragments)
            {
                if (frag.IsText) EncodeBpe(text.AsSpan(frag.Offset, frag.Length), output);
                else output.Add(frag.Token);
            }
        }
        if (addSpecial && _addEos)
        {
            if (EosId == Null) throw new BupoException("the vocabulary asks for EOS but has no EOS token");
            output.Add(EosId);
        }
        return output.ToArray();
    }

    // tokenizer_st_partition: split out special tokens, longest first
    private List<Fragment> Partition(string text, bool parseSpecial)
    {
        var buffer = new List<Fragment> { new(Null, 0, text.Length) };
        var search = parseSpecial ? _specialSearchAll : _specialSearchUser;
        if (search == null || text.AsSpan().IndexOfAny(search) < 0) return buffer;
        var pieces = new List<Fragment>();
        foreach (var special in _specialTokens)
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
                    pieces.Add(new(special, 0, 0));
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

    private void EncodeBpe(ReadOnlySpan<char> fragment, List<int> output)
    {
        var cptsArr = ArrayPool<int>.Shared.Rent(fragment.Length);
        try
        {
            var n = LlamaUnicode.DecodeCodepoints(fragment, cptsArr);
            var cpts = cptsArr.AsSpan(0, n);
            var lengths = _pre!.Split(cpts);
            int charPos = 0, cptPos = 0;
            foreach (var len in lengths)
            {
                var charLen = 0;
                for (var k = cptPos; k < cptPos + len; k++) charLen += cpts[k] > 0xFFFF ? 2 : 1;
                if (charLen > 0) EncodeWord(fragment.Slice(charPos, charLen), output);
                charPos += charLen;
                cptPos += len;
            }
        }
        finally
        {
            ArrayPool<int>.Shared.Return(cptsArr);
        }
    }

    private void EncodeWord(ReadOnlySpan<char> word, List<int> output)
    {
        var cacheable = word.Length <= MaxCachedWordLength;
        if (cacheable && _wordCacheLookup.TryGetValue(word, out var cached))
        {
            output.AddRange(cached);
            return;
        }
        var start = output.Count;
        EncodeWordUncached(word, output);
        if (cacheable)
        {
            if (Volatile.Read(ref _wordCacheCount) >= MaxCacheEntries)
            {
                _wordCache.Clear(); // bounded: start over rather than track recency
                Volatile.Write(ref _wordCacheCount, 0);
            }
            if (_wordCache.TryAdd(word.ToString(), CollectionsMarshal.AsSpan(output)[start..].ToArray())) Interlocked.Increment(ref _wordCacheCount);
        }
    }

    private void EncodeWordUncached(ReadOnlySpan<char> word, List<int> output)
    {
        var byteCount = Encoding.UTF8.GetByteCount(word);
        byte[]? rentedBytes = null;
        int[]? rentedSyms = null;
        char[]? rentedChars = null;
        var bytes = byteCount <= 256 ? stackalloc byte[256] : (rentedBytes = ArrayPool<byte>.Shared.Rent(byteCount));
        bytes = bytes[..Encoding.UTF8.GetBytes(word, bytes)];
        try
        {
            if (_ignoreMerges)
            {
                var enc = bytes.Length <= 256 ? stackalloc char[256] : (rentedChars = ArrayPool<char>.Shared.Rent(bytes.Length));
                enc = enc[..bytes.Length];
                for (var i = 0; i < bytes.Length; i++) enc[i] = LlamaUnicode.ByteToChar[bytes[i]];
                if (_tokenLookup.TryGetValue(enc, out var whole))
                {
                    output.Add(whole);
                    return;
                }
            }
            var syms = bytes.Length <= NaiveMergeLimit ? stackalloc int[NaiveMergeLimit] : (rentedSyms = ArrayPool<int>.Shared.Rent(bytes.Length));
            syms = syms[..bytes.Length];
            for (var i = 0; i < bytes.Length; i++) syms[i] = _byteSymbols[bytes[i]];
            var count = bytes.Length <= NaiveMergeLimit ? MergeNaive(syms) : MergeWithQueue(syms);
            for (var i = 0; i < count; i++) EmitSymbol(syms[i], output);
        }
        finally
        {
            if (rentedBytes != null) ArrayPool<byte>.Shared.Return(rentedBytes);
            if (rentedSyms != null) ArrayPool<int>.Shared.Return(rentedSyms);
            if (rentedChars != null) ArrayPool<char>.Shared.Return(rentedChars);
        }
    }

    private void EmitSymbol(int sym, List<int> output)
    {
        if (sym < _texts.Length)
        {
            output.Add(sym);
            return;
        }
        // not a token: llama.cpp looks each byte of the (byte-level) text up as a one-byte token; only ASCII can match
        foreach (var c in _extraSymbols[sym - _texts.Length])
        {
            if (c < 0x80 && _asciiTokens[c] != Null) output.Add(_asciiTokens[c]);
        }
    }

    // Repeatedly merge the adjacent pair of lowest rank (leftmost on ties): what llama.cpp's queue computes.
    private int MergeNaive(Span<int> syms)
    {
        var n = syms.Length;
        Span<long> merge = stackalloc long[NaiveMergeLimit]; // (rank << 32 | result) of pair (i, i+1), or -1
        for (var i = 0; i + 1 < n; i++) merge[i] = _merges.GetValueOrDefault(PairKey(syms[i], syms[i + 1]), -1);
        while (n > 1)
        {
            var best = -1;
            var bestRank = long.MaxValue;
            for (var i = 0; i + 1 < n; i++)
            {
                var m = merge[i];
                if (m >= 0 && m >> 32 < bestRank) { bestRank = m >> 32; best = i; }
            }
            if (best < 0) break;
            syms[best] = (int)(merge[best] & 0xFFFFFFFF);
            for (var i = best + 1; i + 1 < n; i++) { syms[i] = syms[i + 1]; merge[i] = merge[i + 1]; }
            n--;
            if (best > 0) merge[best - 1] = _merges.GetValueOrDefault(PairKey(syms[best - 1], syms[best]), -1);
            if (best + 1 < n) merge[best] = _merges.GetValueOrDefault(PairKey(syms[best], syms[best + 1]), -1);
        }
        return n;
    }

    private readonly record struct BpeBigram(int Left, int Right, int LeftSym, int RightSym, int Result);

    // llm_tokenizer_bpe_session::tokenize for long words: a priority queue of (rank, left position)
    private int MergeWithQueue(Span<int> syms)
    {
        var n = syms.Length;
        var prev = new int[n];
        var next = new int[n];
        var alive = new bool[n];
        for (var i = 0; i < n; i++) { prev[i] = i - 1; next[i] = i + 1 < n ? i + 1 : -1; alive[i] = true; }
        var queue = new PriorityQueue<BpeBigram, long>();
        void TryAdd(Span<int> s, int left, int right)
        {
            if (left < 0 || right < 0) return;
            if (!_merges.TryGetValue(PairKey(s[left], s[right]), out var m)) return;
            queue.Enqueue(new BpeBigram(left, right, s[left], s[right], (int)(m & 0xFFFFFFFF)), ((m >> 32) << 32) | (uint)left);
        }
        for (var i = 1; i < n; i++) TryAdd(syms, i - 1, i);
        while (queue.TryDequeue(out var b, out _))
        {
            if (!alive[b.Left] || !alive[b.Right] || syms[b.Left] != b.LeftSym || syms[b.Right] != b.RightSym) continue;
            syms[b.Left] = b.Result;
            alive[b.Right] = false;
            next[b.Left] = next[b.Right];
            if (next[b.Right] >= 0) prev[next[b.Right]] = b.Left;
            TryAdd(syms, prev[b.Left], b.Left);
            TryAdd(syms, b.Left, next[b.Left]);
        }
        var count = 0;
        for (var i = 0; i < n; i++) if (alive[i]) syms[count++] = syms[i];
        return count;
    }

    private readonly record struct SpmBigram(int Left, int Right, int Size);

    private static readonly IComparer<(float Score, int Left)> SpmOrder = Comparer<(float Score, int Left)>.Create(
        static (a, b) => a.Score != b.Score ? b.Score.CompareTo(a.Score) : a.Left.CompareTo(b.Left));

    // llm_tokenizer_spm_session::tokenize, on the text with spaces escaped as ▁
    private void EncodeSpm(ReadOnlySpan<char> fragment, bool prefixSpace, List<int> output)
    {
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
        var removeSpace = _addSpacePrefix;
        if (removeSpecial && AddsBos && ids.Length > 0 && ids[0] == BosId)
        {
            removeSpace = false;
            ids = ids[1..];
        }
        if (removeSpecial && _addEos && ids.Length > 0 && ids[^1] == EosId) ids = ids[..^1];

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
        if (_cleanSpaces) total = CleanSpaces(text, total);
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
