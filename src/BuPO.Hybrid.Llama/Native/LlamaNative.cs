using System.Runtime.InteropServices;
using LLama.Native;

namespace BuPO.Hybrid.Llama.Native;

/// <summary>
/// Our own P/Invoke declarations, only for what LLamaSharp 0.30.0 does not give (everything else goes through its
/// SafeLlamaModelHandle, SafeLLamaContextHandle, sampler chain, NativeApi). The logical library names are mapped by
/// <see cref="LlamaLibraryLoader"/>'s resolver to the very files LLamaSharp loaded. What and why:
/// <list type="bullet">
/// <item>ggml tensor reads and sizes (the eval-callback probe) and the backend/device registry: not bound by LLamaSharp.</item>
/// <item><c>llama_model_get_vocab</c>, <c>llama_vocab_get_text</c>, <c>llama_detokenize</c>: internal in LLamaSharp.</item>
/// <item><c>llama_model_meta_val_str</c>: LLamaSharp's MetadataValueByKey passes the key without its terminating NUL
/// (llama.cpp then reads past it and finds no such key).</item>
/// <item><c>llama_get_memory</c>: private there; with it LLamaSharp's public <c>NativeApi.llama_memory_seq_rm</c> reports
/// whether a removal happened (its <c>MemorySequenceRemove</c> drops that answer).</item>
/// <item><c>llama_decode</c> on a <c>llama_batch_init</c> batch: LLamaSharp's <c>Decode(LLamaBatch)</c> takes a
/// process-wide lock (two contexts on two threads, as the demo's evaluations run, would decode one at a time) and pins
/// every array of its managed batch on each call.</item>
/// <item>LoRA: LLamaSharp's <c>LoadLoraFromFile</c> does not check for the NULL of a failed load (the adapter then holds
/// NULL, which a decode would dereference) and <c>SetLoraAdapters</c> drops the return code.</item>
/// </list>
/// </summary>
internal static unsafe partial class LlamaNative
{
    public const string Llama = "llama";
    public const string Ggml = "ggml";
    public const string GgmlBase = "ggml-base";

    // ---- model, vocab (pointer owned by the model) ----
    [LibraryImport(Llama)] public static partial nint llama_model_get_vocab(SafeLlamaModelHandle model);
    [LibraryImport(Llama)] public static partial byte* llama_vocab_get_text(nint vocab, int token);
    [LibraryImport(Llama, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int llama_model_meta_val_str(SafeLlamaModelHandle model, string key, byte* buf, nuint bufSize);
    [LibraryImport(Llama)]
    public static partial int llama_detokenize(nint vocab, int* tokens, int nTokens, byte* text, int textLenMax,
        [MarshalAs(UnmanagedType.U1)] bool removeSpecial, [MarshalAs(UnmanagedType.U1)] bool unparseSpecial);

    // ---- context ----
    [LibraryImport(Llama)] public static partial nint llama_get_memory(SafeLLamaContextHandle ctx);
    // DllImport: the source generator cannot prove LLamaSharp's LLamaNativeBatch blittable (it is: pointers and an int).
    [DllImport(Llama, CallingConvention = CallingConvention.Cdecl)] public static extern int llama_decode(SafeLLamaContextHandle ctx, LLamaNativeBatch batch);

    // ---- LoRA ----
    [LibraryImport(Llama, StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint llama_adapter_lora_init(SafeLlamaModelHandle model, string path);
    [LibraryImport(Llama)] public static partial void llama_adapter_lora_free(nint adapter);
    [LibraryImport(Llama)] public static partial int llama_set_adapters_lora(SafeLLamaContextHandle ctx, nint* adapters, nuint count, float* scales);

    // ---- ggml (backend registry) ----
    [LibraryImport(Ggml, StringMarshalling = StringMarshalling.Utf8)]
    public static partial void ggml_backend_load_all_from_path(string dirPath);
    [LibraryImport(Ggml)] public static partial nuint ggml_backend_dev_count();
    [LibraryImport(Ggml)] public static partial nint ggml_backend_dev_get(nuint index);

    // ---- ggml-base (tensors, devices) ----
    [LibraryImport(GgmlBase)] public static partial byte* ggml_backend_dev_name(nint device);
    [LibraryImport(GgmlBase)] public static partial byte* ggml_backend_dev_description(nint device);
    [LibraryImport(GgmlBase)] public static partial int ggml_backend_dev_type(nint device);
    [LibraryImport(GgmlBase)] public static partial void ggml_backend_tensor_get(GgmlTensor* tensor, void* data, nuint offset, nuint size);
    [LibraryImport(GgmlBase)] public static partial nuint ggml_nbytes(GgmlTensor* tensor);
    [LibraryImport(GgmlBase)] public static partial long ggml_nelements(GgmlTensor* tensor);
    [LibraryImport(GgmlBase)] public static partial byte* ggml_get_name(GgmlTensor* tensor);
    [LibraryImport(GgmlBase)] public static partial nuint ggml_tensor_overhead();

    /// <summary>Exports probed right after loading, per library, to turn a wrong or mismatched build into one clear error.</summary>
    public static readonly (string Library, string[] Symbols)[] RequiredExports =
    [
        (GgmlBase, ["ggml_backend_tensor_get", "ggml_nbytes", "ggml_nelements", "ggml_get_name", "ggml_tensor_overhead",
                    "ggml_backend_dev_name", "ggml_backend_dev_description", "ggml_backend_dev_type"]),
        (Ggml, ["ggml_backend_load_all_from_path", "ggml_backend_dev_count", "ggml_backend_dev_get"]),
        (Llama, ["llama_model_get_vocab", "llama_vocab_get_text", "llama_model_meta_val_str", "llama_detokenize", "llama_get_memory", "llama_decode",
                 "llama_adapter_lora_init", "llama_adapter_lora_free", "llama_set_adapters_lora", "llama_n_rs_seq", "llama_model_quantize",
                 "llama_context_default_params", "llama_model_default_params", "llama_model_quantize_default_params", "llama_batch_init"]),
    ];

    /// <summary>UTF-8 C string (owned by llama.cpp) to a managed string; null stays null.</summary>
    public static string? Str(byte* p) => p == null ? null : Marshal.PtrToStringUTF8((nint)p);

    /// <summary>UTF-8 C string given as an address (LLamaSharp's NativeApi returns some as IntPtr).</summary>
    public static string? Str(nint p) => p == 0 ? null : Marshal.PtrToStringUTF8(p);
}
