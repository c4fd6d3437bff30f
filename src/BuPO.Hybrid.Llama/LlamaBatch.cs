using LLama.Native;

namespace BuPO.Hybrid.Llama;

/// <summary>
/// A token batch for <see cref="LlamaContext.Decode"/>: LLamaSharp's <see cref="LLamaNativeBatch"/>, allocated by
/// <c>llama_batch_init</c> and freed by <c>llama_batch_free</c> (through LLamaSharp's NativeApi). Each entry is a token at
/// a position in one or more sequences, with a flag asking for its logits. Native memory, written in place: a decode
/// passes it as it is (no pinning, no allocation per call).
/// </summary>
public sealed unsafe class LlamaBatch : IDisposable
{
    private LLamaNativeBatch _native;
    private bool _disposed;

    /// <summary>Allocates room for <paramref name="capacity"/> tokens, each in up to <paramref name="maxSequencesPerToken"/> sequences.</summary>
    public LlamaBatch(int capacity, int maxSequencesPerToken = 1)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxSequencesPerToken, 1);
        LlamaBackend.EnsureInitialized();
        _native = NativeApi.llama_batch_init(capacity, 0, maxSequencesPerToken);
        if (_native.tokens == null || _native.pos == null || _native.n_seq_id == null || _native.seq_id == null || _native.logits == null)
        {
            if (_native.tokens != null) NativeApi.llama_batch_free(_native);
            throw new InvalidOperationException("llama_batch_init failed (out of memory)");
        }
        Capacity = capacity;
        MaxSequencesPerToken = maxSequencesPerToken;
    }

    /// <summary>Maximum number of tokens.</summary>
    public int Capacity { get; }
    /// <summary>Maximum number of sequence ids per token.</summary>
    public int MaxSequencesPerToken { get; }
    /// <summary>Tokens added since the last <see cref="Clear"/>.</summary>
    public int Count => _native.n_tokens;
    /// <summary>Number of entries that asked for logits.</summary>
    public int OutputCount { get; private set; }

    /// <summary>Adds a token of one sequence; returns its index in the batch (the index for <see cref="LlamaContext.GetLogits"/>).</summary>
    public int Add(int token, int position, int sequenceId, bool wantLogits)
    {
        ReadOnlySpan<int> seq = [sequenceId];
        return Add(token, position, seq, wantLogits);
    }

    /// <summary>Adds a token shared by several sequences (e.g. a common prompt prefix).</summary>
    public int Add(int token, int position, ReadOnlySpan<int> sequenceIds, bool wantLogits)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        int i = _native.n_tokens;
        if (i >= Capacity) throw new InvalidOperationException($"the batch is full ({Capacity} tokens)");
        if (sequenceIds.Length < 1 || sequenceIds.Length > MaxSequencesPerToken)
            throw new ArgumentException($"a token needs 1 to {MaxSequencesPerToken} sequence ids, got {sequenceIds.Length}", nameof(sequenceIds));
        ((int*)_native.tokens)[i] = token;
        ((int*)_native.pos)[i] = position;
        _native.n_seq_id[i] = sequenceIds.Length;
        var ids = (int*)_native.seq_id[i];
        for (int s = 0; s < sequenceIds.Length; s++) ids[s] = sequenceIds[s];
        _native.logits[i] = wantLogits ? (byte)1 : (byte)0;
        if (wantLogits) OutputCount++;
        _native.n_tokens = i + 1;
        return i;
    }

    /// <summary>Sets or clears the logits flag of an entry already added.</summary>
    public void SetWantLogits(int index, bool wantLogits)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if ((uint)index >= (uint)Count) throw new ArgumentOutOfRangeException(nameof(index));
        bool had = _native.logits[index] != 0;
        _native.logits[index] = wantLogits ? (byte)1 : (byte)0;
        OutputCount += (wantLogits ? 1 : 0) - (had ? 1 : 0);
    }

    /// <summary>Token id at <paramref name="index"/>.</summary>
    public int TokenAt(int index) => (uint)index < (uint)Count ? ((int*)_native.tokens)[index] : throw new ArgumentOutOfRangeException(nameof(index));

    /// <summary>Empties the batch (keeps the memory).</summary>
    public void Clear()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _native.n_tokens = 0;
        OutputCount = 0;
    }

    internal LLamaNativeBatch Native
    {
        get { ObjectDisposedException.ThrowIf(_disposed, this); return _native; }
    }

    /// <summary>Frees the native arrays.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        NativeApi.llama_batch_free(_native);
        _native = default;
        GC.SuppressFinalize(this);
    }

    /// <summary>Frees the native arrays if Dispose was not called.</summary>
    ~LlamaBatch()
    {
        if (!_disposed && _native.tokens != null) NativeApi.llama_batch_free(_native);
    }
}
