using System.Buffers;
using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Text;
using BuPO.Hybrid.Gguf;

namespace BuPO.Hybrid.Tokenizers;

/// <summary>
/// Byte-level BPE (<c>tokenizer.ggml.model = gpt2</c>): llama.cpp's <c>llm_tokenizer_bpe_session</c>. Text is split by the
/// pre-tokenizer that <c>tokenizer.ggml.pre</c> names, each word is merged by <c>tokenizer.ggml.merges</c> rank.
/// </summary>
public sealed class GgufBpeTokenizer : GgufTokenizer
{
    private const int MaxCachedWordLength = 64;
    private const int MaxCacheEntries = 1 << 16;
    private const int NaiveMergeLimit = 48;

    private readonly string[] _texts;
    private readonly Dictionary<string, int> _tokenToId;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _tokenLookup;
    private readonly LlamaPreTokenizer _pre;
    private readonly bool _ignoreMerges;
    private readonly Dictionary<long, long> _merges = new();   // (left symbol, right symbol) -> (rank, merged symbol)
    private readonly List<string> _extraSymbols = new();        // symbol texts that are not tokens (ids from VocabSize up)
    private readonly int[] _byteSymbols = new int[256];
    private readonly int[] _asciiTokens = new int[128];
    private readonly ConcurrentDictionary<string, int[]> _wordCache = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>> _wordCacheLookup;
    private int _wordCacheCount; // ConcurrentDictionary.Count takes every lock: count additions ourselves

    private GgufBpeTokenizer(GgufFile f, LlamaPreTypes.PreType preType)
        : base(new GgufVocabulary(f, Defaults(preType)))
    {
        _texts = Vocabulary.Texts;
        _tokenToId = Vocabulary.TokenToId;
        _tokenLookup = Vocabulary.TokenLookup;
        _wordCacheLookup = _wordCache.GetAlternateLookup<ReadOnlySpan<char>>();
        _ignoreMerges = preType.IgnoreMerges;
        _pre = LlamaPreTokenizer.FromExpressions(preType.Expressions);
        LoadMerges(f, f.Path);
    }

    /// <summary>Reads the BPE tokenizer of <paramref name="f"/> (whose tokenizer.ggml.model is gpt2).</summary>
    /// <exception cref="UnsupportedTokenizerException">The pre-tokenizer is not implemented here.</exception>
    /// <exception cref="BupoException">The vocabulary is malformed.</exception>
    internal static GgufBpeTokenizer Read(GgufFile f)
    {
        var pre = GgufVocabulary.ReadString(f, "tokenizer.ggml.pre");
        var preType = LlamaPreTypes.Find(pre);
        if (preType == null)
        {
            var why = LlamaPreTypes.KnownUnsupported.Contains(pre)
                ? "not implemented by the managed tokenizer"
                : "unknown to llama.cpp's tokenizer as well";
            throw new UnsupportedTokenizerException(
                $"{f.Path}: unsupported pre-tokenizer '{pre}' (tokenizer.ggml.pre) for tokenizer model 'gpt2': {why}");
        }
        return new GgufBpeTokenizer(f, preType);
    }

    // llama_vocab::impl::load for LLAMA_VOCAB_TYPE_BPE, with the flags of the pre-tokenizer type
    private static GgufVocabularyDefaults Defaults(LlamaPreTypes.PreType preType) => new(
        TokenTextForm.ByteLevel, Bos: preType.NoBos ? Null : 11, Eos: 11, Unknown: Null,
        AddSpacePrefix: false, CleanSpaces: preType.CleanSpaces, AddBos: preType.AddBos);

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

    private protected override void EncodeText(ReadOnlySpan<char> fragment, bool afterSpecial, List<int> output)
    {
        var cptsArr = ArrayPool<int>.Shared.Rent(fragment.Length);
        try
        {
            var n = LlamaUnicode.DecodeCodepoints(fragment, cptsArr);
            var cpts = cptsArr.AsSpan(0, n);
            var lengths = _pre.Split(cpts);
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
}
