using System.Runtime.InteropServices;
using System.Text;
using BuPO.Hybrid.Llama.Native;
using BuPO.Hybrid.Tokenizers;
using LLama.Native;

namespace BuPO.Hybrid.Llama;

/// <summary>
/// The tokenizer of a loaded model, with llama.cpp's exact semantics (<c>llama_tokenize</c>,
/// <c>llama_detokenize</c>, <c>llama_token_to_piece</c>), through LLamaSharp's vocabulary where it has the call.
/// Valid while its <see cref="LlamaModel"/> is.
/// </summary>
public sealed unsafe class LlamaVocab : ITextTokenizer
{
    private readonly LlamaModel _model;
    private readonly SafeLlamaModelHandle.Vocabulary _vocab;
    private nint V { get { _model.ThrowIfDisposed(); return _model.NativeVocab; } }
    private SafeLlamaModelHandle.Vocabulary Vocabulary { get { _model.ThrowIfDisposed(); return _vocab; } }

    internal LlamaVocab(LlamaModel model)
    {
        _model = model;
        _vocab = model.Handle.Vocab;
        VocabSize = _vocab.Count;
        BosId = Id(_vocab.BOS);
        EosId = Id(_vocab.EOS);
        EotId = Id(_vocab.EOT);
        NewlineId = Id(_vocab.Newline);
        PadId = Id(_vocab.Pad);
        AddsBos = _vocab.ShouldAddBOS;
        AddsEos = _vocab.ShouldAddEOS;
        Type = _vocab.Type switch
        {
            LLamaVocabType.None => "none",
            LLamaVocabType.SentencePiece => "spm",
            LLamaVocabType.BytePairEncoding => "bpe",
            LLamaVocabType.WordPiece => "wpm",
            LLamaVocabType.Unigram => "ugm",
            LLamaVocabType.RWKV => "rwkv",
            LLamaVocabType.PLAMO2 => "plamo2",
            var t => ((int)t).ToString(System.Globalization.CultureInfo.InvariantCulture),
        };

        static int Id(LLamaToken? t) => t is { } v ? (int)v : -1;
    }

    /// <inheritdoc/>
    public int VocabSize { get; }
    /// <inheritdoc/>
    public int BosId { get; }
    /// <inheritdoc/>
    public int EosId { get; }
    /// <summary>End-of-turn token id, or -1.</summary>
    public int EotId { get; }
    /// <summary>Newline token id, or -1.</summary>
    public int NewlineId { get; }
    /// <summary>Padding token id, or -1.</summary>
    public int PadId { get; }
    /// <inheritdoc/>
    public bool AddsBos { get; }
    /// <summary>Whether <c>addSpecial</c> appends EOS.</summary>
    public bool AddsEos { get; }
    /// <summary>Tokenizer family: spm, bpe, wpm, ugm, rwkv, plamo2.</summary>
    public string Type { get; }

    /// <inheritdoc/>
    public bool IsEndOfGeneration(int id) => ((LLamaToken)id).IsEndOfGeneration(Vocabulary);

    /// <summary>True for control tokens.</summary>
    public bool IsControl(int id) { CheckId(id); return ((LLamaToken)id).IsControl(Vocabulary); }

    /// <summary>The token's text as stored in the vocabulary (e.g. "▁the", "&lt;0x0A&gt;").</summary>
    public string GetText(int id)
    {
        CheckId(id);
        return LlamaNative.Str(LlamaNative.llama_vocab_get_text(V, id)) ?? "";
    }

    /// <inheritdoc/>
    public int[] Encode(string text, bool addSpecial = true, bool parseSpecial = false)
    {
        ArgumentNullException.ThrowIfNull(text);
        _model.ThrowIfDisposed();
        LLamaToken[] tokens;
        try
        {
            tokens = _model.Handle.Tokenize(text, addSpecial, parseSpecial, Encoding.UTF8);
        }
        catch (OverflowException e)
        {
            throw new BupoException("llama_tokenize: the text gives more tokens than an int32 can count", e);
        }
        return MemoryMarshal.Cast<LLamaToken, int>(tokens).ToArray();
    }

    /// <inheritdoc/>
    public string Decode(ReadOnlySpan<int> ids, bool removeSpecial = false, bool unparseSpecial = false)
    {
        if (ids.IsEmpty) return "";
        foreach (var id in ids) CheckId(id); // llama.cpp indexes its tables with .at(): a bad id would abort the process
        int capacity = ids.Length * 8 + 16;
        while (true)
        {
            var buf = new byte[capacity];
            int n;
            fixed (int* t = ids)
            fixed (byte* b = buf)
                n = LlamaNative.llama_detokenize(V, t, ids.Length, b, capacity, removeSpecial, unparseSpecial);
            if (n == int.MinValue) throw new BupoException("llama_detokenize: the text is too long");
            if (n < 0) { capacity = -n; continue; }
            return Encoding.UTF8.GetString(buf, 0, n);
        }
    }

    /// <summary>
    /// The concatenated pieces of <paramref name="ids"/> decoded as UTF-8: the text of a continuation. Unlike
    /// <see cref="Decode"/> (llama_detokenize, which drops an SPM vocabulary's leading space unless the ids start with
    /// BOS and <c>removeSpecial</c> is set), nothing is stripped; control tokens render as "" unless <paramref name="special"/>.
    /// </summary>
    public string DecodePieces(ReadOnlySpan<int> ids, bool special = false)
    {
        var bytes = new List<byte>(ids.Length * 4);
        foreach (var id in ids) bytes.AddRange(TokenToPieceBytes(id, special));
        return Encoding.UTF8.GetString(bytes.ToArray());
    }

    /// <inheritdoc/>
    public string TokenToPiece(int id) => Encoding.UTF8.GetString(TokenToPieceBytes(id));

    /// <summary>
    /// The raw bytes of one token's piece (<c>llama_token_to_piece</c>); a byte-fallback token may hold a partial
    /// UTF-8 sequence, so streaming output should concatenate bytes before decoding.
    /// </summary>
    public byte[] TokenToPieceBytes(int id, bool special = true)
    {
        CheckId(id);
        var vocab = Vocabulary;
        Span<byte> small = stackalloc byte[64];
        int n = NativeApi.llama_token_to_piece(vocab, id, small, 0, special);
        if (n >= 0) return small[..n].ToArray();
        var buf = new byte[-n];
        n = NativeApi.llama_token_to_piece(vocab, id, buf, 0, special);
        return n < 0 ? throw new BupoException($"llama_token_to_piece failed for token {id}") : buf.AsSpan(0, n).ToArray();
    }

    private void CheckId(int id)
    {
        if ((uint)id >= (uint)VocabSize) throw new ArgumentOutOfRangeException(nameof(id), id, $"token id outside [0, {VocabSize})");
    }
}
