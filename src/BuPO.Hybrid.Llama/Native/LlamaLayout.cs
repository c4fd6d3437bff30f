using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using LLama.Native;

namespace BuPO.Hybrid.Llama.Native;

/// <summary>
/// Checks, right after loading and before anything else passes them, that the structs LLamaSharp 0.30.0 passes to
/// llama.cpp by value (or fills from it) have the layout of the loaded library: <c>llama_context_params</c>,
/// <c>llama_model_params</c>, <c>llama_model_quantize_params</c>, <c>llama_batch</c>, <c>llama_sampler_chain_params</c>,
/// and our own <c>ggml_tensor</c> mirror. A library of another llama.cpp commit (a field added, removed or moved) then
/// fails with one line naming the struct and the field, instead of corrupting memory at the first context.
/// </summary>
/// <remarks>
/// How: the library's own <c>*_default_params()</c> / <c>llama_batch_init()</c> write their struct into a buffer of ours
/// that is far larger than any of these structs, filled twice with two different canary bytes: the bytes written in either
/// run give the extent of the library's struct, which must end where LLamaSharp's does, and every field must read back as
/// llama.cpp 815a2a59's default (a shifted field reads a neighbour's value). On x64 (System V and Windows) a function
/// returning a struct this large takes the destination as a hidden first argument, so it is called as
/// <c>void f(void *dst, ...)</c>. Elsewhere the buffer is a 1 KiB return type (memory-safe, but without the extent): there
/// only the defaults are compared.
/// </remarks>
internal static unsafe class LlamaLayout
{
    private const int ProbeBytes = 1024;

    [StructLayout(LayoutKind.Sequential, Size = ProbeBytes)]
    private struct Buffer1K { private byte _first; }

    /// <summary>Bytes a struct-returning native function wrote: <see cref="Bytes"/> (ProbeBytes long), <see cref="Extent"/> = 1 + the last byte written, or -1 when unknown.</summary>
    internal readonly record struct Written(byte[] Bytes, int Extent);

    /// <summary>Throws one <see cref="BupoException"/> line when a struct of the loaded library differs.</summary>
    public static void Check(LlamaLibraryLoader.LoadedLibraries libs)
    {
        var problem = FirstProblem(libs.Llama);
        if (problem != null) throw new BupoException(Message(libs.LlamaPath, problem));
    }

    /// <summary>The one-line error for a library whose struct differs.</summary>
    internal static string Message(string llamaPath, string problem) =>
        $"{llamaPath} does not match the llama.cpp C API LLamaSharp {LlamaBackend.LlamaSharpVersion} binds (llama.cpp {LlamaBackend.LlamaCppCommit}): " +
        $"{problem}; use LLamaSharp.Backend.Cpu's libraries or a build of that commit";

    /// <summary>The first difference found in the library <paramref name="llama"/> (a handle from NativeLibrary.Load), or null.</summary>
    internal static string? FirstProblem(nint llama)
    {
        return ContextParams(CallDefault(llama, "llama_context_default_params"))
               ?? ModelParams(CallDefault(llama, "llama_model_default_params"))
               ?? QuantizeParams(CallDefault(llama, "llama_model_quantize_default_params"))
               ?? Batch(llama)
               ?? SamplerChainParams()
               ?? TensorOverhead(LlamaNative.ggml_tensor_overhead());
    }

    // ---- the structs ----

    /// <summary>llama_context_params against LLamaSharp's <see cref="LLamaContextParams"/> and 815a2a59's defaults.</summary>
    internal static string? ContextParams(Written w)
    {
        const string s = "llama_context_params";
        if (SizeProblem(s, w, Unsafe.SizeOf<LLamaContextParams>(), lastFieldEnd: 160) is { } size) return size;
        var p = MemoryMarshal.Read<LLamaContextParams>(w.Bytes);
        var d = new Defaults(s);
        d.Field("n_ctx", p.n_ctx, 512u).Field("n_batch", p.n_batch, 2048u).Field("n_ubatch", p.n_ubatch, 512u).Field("n_seq_max", p.n_seq_max, 1u)
         .Field("n_rs_seq", p.n_rs_seq, 0u).Field("n_outputs_max", p.n_outputs_max, 0u)
         .Field("n_threads", p.n_threads, 4).Field("n_threads_batch", p.n_threads_batch, 4)
         .Field("context_type", (int)p.context_type, 0).Field("rope_scaling_type", (int)p.rope_scaling_type, -1)
         .Field("pooling_type", (int)p.llama_pooling_type, -1).Field("attention_type", (int)p.attention_type, -1)
         .Field("flash_attn_type", (int)p.llama_flash_attn_type, -1)
         .Field("rope_freq_base", p.rope_freq_base, 0f).Field("rope_freq_scale", p.rope_freq_scale, 0f)
         .Field("yarn_ext_factor", p.yarn_ext_factor, -1f).Field("yarn_attn_factor", p.yarn_attn_factor, -1f)
         .Field("yarn_beta_fast", p.yarn_beta_fast, -1f).Field("yarn_beta_slow", p.yarn_beta_slow, -1f)
         .Field("yarn_orig_ctx", p.yarn_orig_ctx, 0u).Field("defrag_thold", p.defrag_threshold, -1f)
         .Field("cb_eval", p.cb_eval, 0).Field("cb_eval_user_data", p.cb_eval_user_data, 0)
         .Field("type_k", (int)p.type_k, 1).Field("type_v", (int)p.type_v, 1)
         .Field("abort_callback", p.abort_callback, 0).Field("abort_callback_data", p.abort_callback_user_data, 0)
         .Field("embeddings", p.embeddings, false).Field("offload_kqv", p.offload_kqv, true).Field("no_perf", p.no_perf, true)
         .Field("op_offload", p.op_offload, true).Field("swa_full", p.swa_full, true).Field("kv_unified", p.kv_unified, false)
         .Field("samplers", p.samplers, 0).Field("n_samplers", p.n_samplers, (nuint)0).Field("ctx_other", p.ctx_other, 0);
        return d.Problem;
    }

    /// <summary>llama_model_params against LLamaSharp's <see cref="LLamaModelParams"/> (read field by field: it holds a delegate).</summary>
    internal static string? ModelParams(Written w)
    {
        const string s = "llama_model_params";
        // LLamaModelParams holds a managed delegate, so its managed size is not its native one: 72 bytes, load_mtp at 69.
        if (SizeProblem(s, w, 72, lastFieldEnd: 70) is { } size) return size;
        var b = w.Bytes.AsSpan();
        var d = new Defaults(s);
        d.Field("devices", Ptr(b, 0), 0).Field("tensor_buft_overrides", Ptr(b, 8), 0).Field("n_gpu_layers", I32(b, 16), -1)
         .Field("split_mode", I32(b, 20), (int)GPUSplitMode.Layer).Field("load_mode", I32(b, 24), (int)LLamaLoadMode.MemoryMap)
         .Field("main_gpu", I32(b, 28), 0).Field("tensor_split", Ptr(b, 32), 0).Field("progress_callback", Ptr(b, 40), 0)
         .Field("progress_callback_user_data", Ptr(b, 48), 0).Field("kv_overrides", Ptr(b, 56), 0)
         .Field("vocab_only", b[64], (byte)0).Field("check_tensors", b[65], (byte)0).Field("use_extra_bufts", b[66], (byte)1)
         .Field("no_host", b[67], (byte)0).Field("no_alloc", b[68], (byte)0).Field("load_mtp", b[69], (byte)0);
        return d.Problem;
    }

    /// <summary>llama_model_quantize_params against LLamaSharp's <see cref="LLamaModelQuantizeParams"/>.</summary>
    internal static string? QuantizeParams(Written w)
    {
        const string s = "llama_model_quantize_params";
        if (SizeProblem(s, w, Unsafe.SizeOf<LLamaModelQuantizeParams>(), lastFieldEnd: 56) is { } size) return size;
        var p = MemoryMarshal.Read<LLamaModelQuantizeParams>(w.Bytes);
        var d = new Defaults(s);
        d.Field("nthread", p.nthread, 0).Field("ftype", (int)p.ftype, (int)LLamaFtype.MOSTLY_Q8_0)
         .Field("output_tensor_type", (int)p.output_tensor_type, GgmlTypes.Count).Field("token_embedding_type", (int)p.token_embedding_type, GgmlTypes.Count)
         .Field("allow_requantize", p.allow_requantize, false).Field("quantize_output_tensor", p.quantize_output_tensor, true)
         .Field("only_copy", p.only_copy, false).Field("pure", p.pure, false).Field("keep_split", p.keep_split, false).Field("dry_run", p.dry_run, false)
         .Field("imatrix", p.imatrix, 0).Field("kv_overrides", p.kv_overrides, 0).Field("tt_overrides", p.tensor_types, 0)
         .Field("prune_layers", p.prune_layers, 0);
        return d.Problem;
    }

    /// <summary>llama_batch (LLamaSharp's <see cref="LLamaNativeBatch"/>) from <c>llama_batch_init(8, 0, 2)</c>: pointers where LLamaSharp reads them.</summary>
    private static string? Batch(nint llama)
    {
        const int n = 8;
        var w = CallBatchInit(llama, n);
        var problem = BatchLayout(w, n);
        if (problem == null) NativeApi.llama_batch_free(MemoryMarshal.Read<LLamaNativeBatch>(w.Bytes)); // leaked on a mismatch: freeing would need the right layout
        return problem;
    }

    internal static string? BatchLayout(Written w, int n)
    {
        const string s = "llama_batch";
        if (SizeProblem(s, w, Unsafe.SizeOf<LLamaNativeBatch>(), lastFieldEnd: 56) is { } size) return size;
        var b = MemoryMarshal.Read<LLamaNativeBatch>(w.Bytes);
        var d = new Defaults(s, "llama_batch_init value");
        d.Field("n_tokens", b.n_tokens, 0).Field("embd", (nint)b.embd, 0)
         .Field("token != NULL", b.tokens != null, true).Field("pos != NULL", b.pos != null, true).Field("n_seq_id != NULL", b.n_seq_id != null, true)
         .Field("seq_id != NULL", b.seq_id != null, true).Field("logits != NULL", b.logits != null, true);
        // llama_batch_init ends seq_id with a NULL sentinel after n entries, each an array of n_seq_max ids.
        if (d.Problem == null && b.seq_id != null) d.Field("seq_id[n_tokens] (the NULL sentinel)", (nint)b.seq_id[n], 0).Field("seq_id[0] != NULL", b.seq_id[0] != null, true);
        return d.Problem;
    }

    /// <summary>llama_sampler_chain_params (one bool, returned in a register: called by value through LLamaSharp).</summary>
    private static string? SamplerChainParams() =>
        new Defaults("llama_sampler_chain_params").Field("no_perf", LLamaSamplerChainParams.Default().NoPerf, true).Problem;

    /// <summary>ggml_tensor: ggml_tensor_overhead() is sizeof(ggml_object) (32) + sizeof(ggml_tensor).</summary>
    internal static string? TensorOverhead(nuint overhead) =>
        overhead == 32 + (nuint)sizeof(GgmlTensor) ? null
        : $"ggml_tensor differs: ggml_tensor_overhead() is {overhead}, our mirror gives 32 + {sizeof(GgmlTensor)}";

    // ---- helpers ----

    private static string? SizeProblem(string name, Written w, int size, int lastFieldEnd)
    {
        if (w.Extent < 0) return null;
        if (w.Extent > size) return $"{name} differs: the library writes {w.Extent} bytes of it, LLamaSharp's struct has {size}";
        if (w.Extent < lastFieldEnd) return $"{name} differs: the library writes {w.Extent} bytes of it, LLamaSharp's last field ends at byte {lastFieldEnd}";
        return null;
    }

    private sealed class Defaults(string structName, string what = "default")
    {
        public string? Problem { get; private set; }

        public Defaults Field<T>(string field, T actual, T expected) where T : IEquatable<T>
        {
            if (Problem == null && !actual.Equals(expected))
                Problem = $"{structName} differs: {field} reads {actual}, llama.cpp {LlamaBackend.LlamaCppCommit}'s {what} is {expected} (a field added, removed or moved?)";
            return this;
        }
    }

    private static int I32(ReadOnlySpan<byte> b, int offset) => MemoryMarshal.Read<int>(b[offset..]);
    private static nint Ptr(ReadOnlySpan<byte> b, int offset) => MemoryMarshal.Read<nint>(b[offset..]);

    private static nint Export(nint lib, string name) =>
        NativeLibrary.TryGetExport(lib, name, out var f) ? f : throw new BupoException($"export '{name}' is missing");

    /// <summary>Calls <c>T name(void)</c> returning a struct of at most <see cref="ProbeBytes"/> bytes.</summary>
    private static Written CallDefault(nint lib, string name)
    {
        var f = Export(lib, name);
        if (RuntimeInformation.ProcessArchitecture == Architecture.X64)
            return Probe(dst => ((delegate* unmanaged<byte*, byte*>)f)(dst));
        var ret = ((delegate* unmanaged<Buffer1K>)f)();
        return new Written(MemoryMarshal.AsBytes(new Span<Buffer1K>(ref ret)).ToArray(), -1);
    }

    private static Written CallBatchInit(nint lib, int n)
    {
        var f = Export(lib, "llama_batch_init");
        if (RuntimeInformation.ProcessArchitecture == Architecture.X64)
        {
            // Two runs (two canaries): free the first run's batch once the layout is known good.
            byte[]? first = null;
            var w = Probe(dst =>
            {
                ((delegate* unmanaged<byte*, int, int, int, byte*>)f)(dst, n, 0, 2);
                if (first == null) first = new Span<byte>(dst, ProbeBytes).ToArray();
            });
            if (first != null && BatchLayout(w, n) == null) NativeApi.llama_batch_free(MemoryMarshal.Read<LLamaNativeBatch>(first));
            return w;
        }
        var ret = ((delegate* unmanaged<int, int, int, Buffer1K>)f)(n, 0, 2);
        return new Written(MemoryMarshal.AsBytes(new Span<Buffer1K>(ref ret)).ToArray(), -1);
    }

    private delegate void Fill(byte* dst);

    /// <summary>Runs <paramref name="fill"/> on two canary-filled buffers; a byte differing from its canary in either run was written.</summary>
    private static Written Probe(Fill fill)
    {
        var a = new byte[ProbeBytes];
        var b = new byte[ProbeBytes];
        a.AsSpan().Fill(0xCD);
        b.AsSpan().Fill(0x5A);
        fixed (byte* pa = a) fill(pa);
        fixed (byte* pb = b) fill(pb);
        int extent = 0;
        for (int i = ProbeBytes - 1; i >= 0; i--)
            if (a[i] != 0xCD || b[i] != 0x5A) { extent = i + 1; break; }
        return new Written(b, extent);
    }
}
