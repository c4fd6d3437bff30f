using System.Runtime.InteropServices;
using BuPO.Hybrid.Llama.Native;
using LLama.Native;

namespace BuPO.Hybrid.Llama;

/// <summary>Options of <see cref="LlamaContext.Create"/>.</summary>
public sealed record LlamaContextOptions
{
    /// <summary>KV cache size in tokens (n_ctx); with the unified cache it is shared by all sequences. 0 = the model's training context.</summary>
    public int ContextSize { get; init; } = 2048;
    /// <summary>Most tokens one <see cref="LlamaContext.Decode"/> call may carry (n_batch).</summary>
    public int BatchSize { get; init; } = 512;
    /// <summary>Micro-batch size (n_ubatch): llama.cpp computes a batch in chunks of this many tokens. Capped at <see cref="BatchSize"/>.</summary>
    public int UBatchSize { get; init; } = 512;
    /// <summary>Most distinct sequence ids (n_seq_max); ids run from 0 to MaxSequences - 1.</summary>
    public int MaxSequences { get; init; } = 1;
    /// <summary>CPU threads for decoding; 0 = all processors.</summary>
    public int Threads { get; init; }
    /// <summary>
    /// One KV buffer for all sequences (kv_unified; default true): cheap <see cref="LlamaContext.SequenceCopy"/> of shared
    /// prefixes, batch order kept inside micro-batches. False gives each sequence its own n_ctx / MaxSequences cells.
    /// </summary>
    public bool UnifiedKvCache { get; init; } = true;
    /// <summary>Flash attention: null = llama.cpp decides.</summary>
    public bool? FlashAttention { get; init; }
    /// <summary>
    /// Element type of the K and V caches: null = llama.cpp's default (F16). F32 together with
    /// <see cref="FlashAttention"/> = false keeps attention in float32 end to end (parity checks against the trainer:
    /// with F16 caches ggml also rounds Q and the attention weights to F16, ~1e-2 on logits).
    /// </summary>
    public BuPO.Hybrid.Gguf.GgmlType? KvCacheType { get; init; }
    /// <summary>Captures intermediate tensors on every decode; see <see cref="TensorProbe"/>. Null or empty = no callback.</summary>
    public TensorProbe? Probe { get; init; }
}

/// <summary>Thrown when <c>llama_decode</c> fails; <see cref="Code"/> is its return value.</summary>
public sealed class LlamaDecodeException(int code, string message) : BupoException(message)
{
    /// <summary>1 = no KV cache slot for the batch, 2 = aborted, -1 = invalid batch, &lt; -1 = compute error.</summary>
    public int Code { get; } = code;
}

/// <summary>
/// An inference context (<c>llama_context</c>, LLamaSharp's <see cref="SafeLLamaContextHandle"/> created from
/// <see cref="LLamaContextParams"/>): KV cache, decode, logits, sequence memory ops, LoRA adapters. Not thread-safe: use
/// one context per thread.
/// </summary>
public sealed unsafe class LlamaContext : IDisposable
{
    /// <summary>Owns LLamaSharp's handle together with the eval callback's user data and the applied adapters.</summary>
    internal SafeContextOwner Owner { get; }

    /// <summary>LLamaSharp's handle (valid while <see cref="Owner"/> is).</summary>
    internal SafeLLamaContextHandle Handle => Owner.Context;
    private readonly List<(LlamaLoraAdapter Adapter, float Scale)> _loras = [];
    private bool _disposed;
    private readonly LlamaComputeThread _compute;

    /// <summary>The model.</summary>
    public LlamaModel Model { get; }
    /// <summary>The options it was created with.</summary>
    public LlamaContextOptions Options { get; }
    /// <summary>The probe, if any.</summary>
    public TensorProbe? Probe { get; }
    /// <summary>Actual KV cache size (llama.cpp may round up).</summary>
    public int ContextSize { get; }
    /// <summary>Actual n_batch.</summary>
    public int BatchSize { get; }
    /// <summary>Actual n_ubatch.</summary>
    public int UBatchSize { get; }
    /// <summary>Actual n_seq_max.</summary>
    public int MaxSequences { get; }
    /// <summary>Vocabulary size (length of a logits row).</summary>
    public int VocabSize { get; }

    private LlamaContext(LlamaModel model, LlamaContextOptions options, SafeContextOwner owner)
    {
        Model = model;
        Options = options;
        Owner = owner;
        Probe = owner.HasCallback ? options.Probe : null;
        var h = owner.Context;
        ContextSize = (int)h.ContextSize;
        BatchSize = (int)h.BatchSize;
        UBatchSize = (int)h.UBatchSize;
        MaxSequences = (int)h.MaxSeq;
        VocabSize = model.VocabSize;
        Memory = LlamaNative.llama_get_memory(h);
        if (Memory == 0) throw new BupoException($"{model.Path}: llama.cpp created a context without memory (KV cache)");
        _compute = new LlamaComputeThread(); // last: a constructor that throws above leaves no compute thread behind
    }

    /// <summary>Creates a context on <paramref name="model"/>.</summary>
    /// <exception cref="BupoException">Invalid options or llama.cpp failed (e.g. out of memory).</exception>
    public static LlamaContext Create(LlamaModel model, LlamaContextOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        options ??= new LlamaContextOptions();
        model.ThrowIfDisposed();
        if (options.ContextSize < 0) throw new BupoException($"context size must be >= 0, got {options.ContextSize}");
        if (options.BatchSize < 1) throw new BupoException($"batch size must be >= 1, got {options.BatchSize}");
        if (options.UBatchSize < 1) throw new BupoException($"micro-batch size must be >= 1, got {options.UBatchSize}");
        if (options.MaxSequences < 1) throw new BupoException($"max sequences must be >= 1, got {options.MaxSequences}");
        if (options.Threads < 0) throw new BupoException($"threads must be >= 0, got {options.Threads}");

        var p = LLamaContextParams.Default(); // layout checked against the library by LlamaBackend.Initialize
        p.n_ctx = (uint)options.ContextSize;
        p.n_batch = (uint)options.BatchSize;
        p.n_ubatch = (uint)Math.Min(options.UBatchSize, options.BatchSize);
        p.n_seq_max = (uint)options.MaxSequences;
        int threads = options.Threads == 0 ? Environment.ProcessorCount : options.Threads;
        p.n_threads = threads;
        p.n_threads_batch = threads;
        p.kv_unified = options.UnifiedKvCache;
        p.llama_flash_attn_type = options.FlashAttention switch
        {
            null => LLamaFlashAttentionType.LLAMA_FLASH_ATTENTION_TYPE_AUTO,
            true => LLamaFlashAttentionType.LLAMA_FLASH_ATTENTION_TYPE_ENABLED,
            false => LLamaFlashAttentionType.LLAMA_FLASH_ATTENTION_TYPE_DISABLED,
        };
        p.no_perf = true;
        if (options.KvCacheType is { } kv)
        {
            if (kv is not (BuPO.Hybrid.Gguf.GgmlType.F32 or BuPO.Hybrid.Gguf.GgmlType.F16 or BuPO.Hybrid.Gguf.GgmlType.BF16 or BuPO.Hybrid.Gguf.GgmlType.Q8_0))
                throw new BupoException($"KV cache type {kv} is not supported (use F32, F16, BF16 or Q8_0)");
            p.type_k = (GGMLType)(int)kv; // ggml's numbering (LLamaSharp's enum lacks BF16)
            p.type_v = (GGMLType)(int)kv;
        }

        // The callback and its user data exist only when something is probed; the GCHandle is owned with the context.
        var probeHandle = default(GCHandle);
        if (options.Probe is { IsEmpty: false } probe)
        {
            probeHandle = GCHandle.Alloc(probe);
            p.cb_eval = (nint)(delegate* unmanaged<GgmlTensor*, byte, void*, byte>)&TensorProbe.OnEval;
            p.cb_eval_user_data = GCHandle.ToIntPtr(probeHandle);
        }
        var mark = LlamaBackend.ErrorMark;
        bool added = false;
        try
        {
            // Our reference on the model for the duration of the creation (the context then holds its own).
            model.Owner.DangerousAddRef(ref added);
            SafeLLamaContextHandle ctx;
            try
            {
                ctx = SafeLLamaContextHandle.Create(model.Handle, p);
            }
            catch (LLama.Exceptions.RuntimeError)
            {
                throw new BupoException($"{model.Path}: llama.cpp could not create a context (n_ctx {options.ContextSize}, n_batch {options.BatchSize}, " +
                                        $"n_seq_max {options.MaxSequences}){LlamaBackend.ErrorsSince(mark)}");
            }
            var owner = new SafeContextOwner(ctx, model.Owner, probeHandle);
            probeHandle = default; // owned from here
            try
            {
                return new LlamaContext(model, options, owner);
            }
            catch
            {
                owner.Dispose();
                throw;
            }
        }
        finally
        {
            if (probeHandle.IsAllocated) probeHandle.Free();
            if (added) model.Owner.DangerousRelease();
        }
    }

    /// <summary>
    /// Runs the model on <paramref name="batch"/>, appending its tokens to the KV cache. Logits of the entries that
    /// asked for them are then available through <see cref="GetLogits"/> (by batch index) until the next decode.
    /// </summary>
    /// <exception cref="LlamaDecodeException">llama_decode returned non-zero (the code names the reason).</exception>
    public void Decode(LlamaBatch batch)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(batch);
        if (batch.Count == 0) throw new ArgumentException("the batch is empty", nameof(batch));
        if (batch.Count > BatchSize)
            throw new LlamaDecodeException(-1, $"llama_decode: the batch holds {batch.Count} tokens, more than the context's batch size {BatchSize}");
        Probe?.BeginDecode();
        var mark = LlamaBackend.ErrorMark;
        // The owner is held for the call: the callback's user data and the adapters cannot be freed during it.
        bool added = false;
        int rc;
        try
        {
            Owner.DangerousAddRef(ref added);
            rc = _compute.Decode(Handle, batch.Native); // on AMX CPUs on a thread of its own, never one that runs libtorch (LlamaComputeThread)
        }
        finally
        {
            if (added) Owner.DangerousRelease();
            GC.KeepAlive(batch);
        }
        if (Probe?.Error is { } probeError)
            throw new BupoException($"tensor probe failed during llama_decode: {probeError.Message}", probeError);
        if (rc == 0) return;
        var what = rc switch
        {
            1 => "no KV cache slot for the batch (context full: use a larger context size or free sequences)",
            2 => "aborted",
            -1 => "invalid batch",
            _ => "compute error",
        };
        throw new LlamaDecodeException(rc, $"llama_decode returned {rc}: {what}{LlamaBackend.ErrorsSince(mark)}");
    }

    /// <summary>
    /// The logits of batch entry <paramref name="index"/> of the last decode (-1 = the last entry that asked for
    /// logits). The span points into llama.cpp's buffer: valid until the next decode.
    /// </summary>
    public ReadOnlySpan<float> GetLogits(int index)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var mark = LlamaBackend.ErrorMark;
        try
        {
            return Handle.GetLogitsIth(index);
        }
        catch (LLama.Exceptions.GetLogitsInvalidIndexException)
        {
            throw new BupoException($"no logits for batch entry {index} (did it ask for logits?){LlamaBackend.ErrorsSince(mark)}");
        }
    }

    /// <summary>The context's <c>llama_memory_t</c> (owned by the context; read once at creation).</summary>
    private nint Memory { get; }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    /// <summary>
    /// Makes the KV cells of <paramref name="source"/> in positions [p0, p1) also belong to <paramref name="destination"/>
    /// (p &lt; 0 = open end). With the unified cache this shares the cells (no copy): a prompt decoded once can fan out.
    /// </summary>
    public void SequenceCopy(int source, int destination, int p0 = -1, int p1 = -1)
    {
        ThrowIfDisposed();
        CheckSeq(source);
        CheckSeq(destination);
        Handle.MemorySequenceCopy((LLamaSeqId)source, (LLamaSeqId)destination, p0, p1);
    }

    /// <summary>Removes positions [p0, p1) of <paramref name="sequence"/> (-1 = all sequences; p &lt; 0 = open end). False if a partial removal is impossible (recurrent models).</summary>
    public bool SequenceRemove(int sequence, int p0 = -1, int p1 = -1)
    {
        ThrowIfDisposed();
        if (sequence != -1) CheckSeq(sequence);
        // NativeApi's call (public) reports the outcome that SafeLLamaContextHandle.MemorySequenceRemove drops.
        bool removed = NativeApi.llama_memory_seq_rm(Memory, (LLamaSeqId)sequence, p0, p1);
        GC.KeepAlive(Owner); // the memory belongs to the context: not freed by a finalizer during the call
        return removed;
    }

    /// <summary>Removes every sequence except <paramref name="sequence"/>.</summary>
    public void SequenceKeep(int sequence)
    {
        ThrowIfDisposed();
        CheckSeq(sequence);
        Handle.MemorySequenceKeep((LLamaSeqId)sequence);
    }

    /// <summary>Largest position stored for <paramref name="sequence"/>, or -1 when it is empty.</summary>
    public int SequencePositionMax(int sequence)
    {
        ThrowIfDisposed();
        CheckSeq(sequence);
        return (int)Handle.MemorySequenceMaxPosition((LLamaSeqId)sequence);
    }

    /// <summary>Empties the KV cache (all sequences).</summary>
    public void Clear()
    {
        ThrowIfDisposed();
        Handle.MemoryClear(true);
    }

    private void CheckSeq(int seq)
    {
        if ((uint)seq >= (uint)MaxSequences) throw new ArgumentOutOfRangeException(nameof(seq), seq, $"sequence id outside [0, {MaxSequences})");
    }

    // ---- LoRA ----

    /// <summary>The adapters applied to this context with their scales.</summary>
    public IReadOnlyList<(LlamaLoraAdapter Adapter, float Scale)> LoraAdapters => _loras;

    /// <summary>Applies <paramref name="adapter"/> with <paramref name="scale"/> (replacing its previous scale); others stay.</summary>
    public void ApplyLora(LlamaLoraAdapter adapter, float scale = 1f)
    {
        ArgumentNullException.ThrowIfNull(adapter);
        if (adapter.Model != Model) throw new BupoException($"LoRA adapter {adapter.Path} was loaded for another model");
        var list = _loras.Where(l => l.Adapter != adapter).Append((adapter, scale)).ToList();
        SetLoras(list);
    }

    /// <summary>Removes every adapter.</summary>
    public void ClearLora() => SetLoras([]);

    private void SetLoras(List<(LlamaLoraAdapter Adapter, float Scale)> list)
    {
        ThrowIfDisposed();
        // Keep every applied adapter alive while the native context may use it (released after llama_free).
        var added = new List<LlamaLoraAdapter>();
        try
        {
            foreach (var (a, _) in list)
            {
                if (_loras.Any(l => l.Adapter == a)) continue;
                bool ok = false;
                a.Handle.DangerousAddRef(ref ok);
                added.Add(a);
            }
            var ptrs = list.Select(l => l.Adapter.Handle.DangerousGetHandle()).ToArray();
            var scales = list.Select(l => l.Scale).ToArray();
            int rc;
            fixed (nint* pp = ptrs)
            fixed (float* ps = scales)
                rc = LlamaNative.llama_set_adapters_lora(Handle, list.Count == 0 ? null : pp, (nuint)list.Count, list.Count == 0 ? null : ps);
            if (rc != 0) throw new BupoException($"llama_set_adapters_lora returned {rc}");
        }
        catch
        {
            foreach (var a in added) a.Handle.DangerousRelease();
            throw;
        }
        lock (Owner.AdapterRefs)
        {
            Owner.AdapterRefs.AddRange(added.Select(a => a.Handle));
            foreach (var (a, _) in _loras)
                if (!list.Any(l => l.Adapter == a))
                {
                    Owner.AdapterRefs.Remove(a.Handle);
                    a.Handle.DangerousRelease();
                }
        }
        _loras.Clear();
        _loras.AddRange(list);
    }

    /// <summary>Frees the context (and then lets go of the model, adapters and probe).</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _compute.Dispose();
        Owner.Dispose(); // llama_free, then the probe's GCHandle and the adapter references, then the model
        _loras.Clear();
    }
}
