using System.Runtime.InteropServices;

namespace BuPO.Hybrid.Llama.Native;

/// <summary>
/// P/Invoke declarations of the llama.cpp C API (llama.h) and the few ggml functions we need. The logical
/// library names are mapped to files by <see cref="LlamaLibraryLoader"/>'s DllImport resolver. Pointers owned
/// by llama.cpp are passed as <see cref="nint"/>; objects we own travel as SafeHandles so that a handle
/// cannot be freed while a call on it runs.
/// </summary>
internal static unsafe partial class LlamaNative
{
    public const string Llama = "llama";
    public const string Ggml = "ggml";
    public const string GgmlBase = "ggml-base";

    // ---- backend, logging ----
    [LibraryImport(Llama)] public static partial void llama_backend_init();
    [LibraryImport(Llama)] public static partial void llama_log_set(delegate* unmanaged<int, byte*, void*, void> callback, void* userData);
    [LibraryImport(Llama)] public static partial byte* llama_print_system_info();
    [LibraryImport(Llama)] [return: MarshalAs(UnmanagedType.U1)] public static partial bool llama_supports_gpu_offload();
    [LibraryImport(Llama)] public static partial LlamaModelParams llama_model_default_params();
    [LibraryImport(Llama)] public static partial LlamaContextParams llama_context_default_params();
    [LibraryImport(Llama)] public static partial LlamaSamplerChainParams llama_sampler_chain_default_params();
    [LibraryImport(Llama)] public static partial LlamaModelQuantizeParams llama_model_quantize_default_params();

    // ---- model ----
    [LibraryImport(Llama, StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint llama_model_load_from_file(string path, LlamaModelParams parameters);
    [LibraryImport(Llama)] public static partial void llama_model_free(nint model);
    [LibraryImport(Llama)] public static partial nint llama_model_get_vocab(SafeLlamaModelHandle model);
    [LibraryImport(Llama)] public static partial int llama_model_n_ctx_train(SafeLlamaModelHandle model);
    [LibraryImport(Llama)] public static partial int llama_model_n_embd(SafeLlamaModelHandle model);
    [LibraryImport(Llama)] public static partial int llama_model_n_layer(SafeLlamaModelHandle model);
    [LibraryImport(Llama)] public static partial int llama_model_n_head(SafeLlamaModelHandle model);
    [LibraryImport(Llama)] public static partial int llama_model_n_head_kv(SafeLlamaModelHandle model);
    [LibraryImport(Llama)] public static partial ulong llama_model_size(SafeLlamaModelHandle model);
    [LibraryImport(Llama)] public static partial ulong llama_model_n_params(SafeLlamaModelHandle model);
    [LibraryImport(Llama)] [return: MarshalAs(UnmanagedType.U1)] public static partial bool llama_model_has_encoder(SafeLlamaModelHandle model);
    [LibraryImport(Llama)] public static partial int llama_model_desc(SafeLlamaModelHandle model, byte* buf, nuint bufSize);
    [LibraryImport(Llama)] public static partial int llama_model_meta_count(SafeLlamaModelHandle model);
    [LibraryImport(Llama, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int llama_model_meta_val_str(SafeLlamaModelHandle model, string key, byte* buf, nuint bufSize);
    [LibraryImport(Llama)] public static partial int llama_model_meta_key_by_index(SafeLlamaModelHandle model, int i, byte* buf, nuint bufSize);
    [LibraryImport(Llama)] public static partial int llama_model_meta_val_str_by_index(SafeLlamaModelHandle model, int i, byte* buf, nuint bufSize);
    [LibraryImport(Llama)] public static partial byte* llama_model_chat_template(SafeLlamaModelHandle model, byte* name);
    [LibraryImport(Llama)] public static partial int llama_chat_apply_template(byte* tmpl, LlamaChatMessageNative* chat, nuint nMsg,
        [MarshalAs(UnmanagedType.U1)] bool addAssistant, byte* buf, int length);
    [LibraryImport(Llama, StringMarshalling = StringMarshalling.Utf8)]
    public static partial uint llama_model_quantize(string inputPath, string outputPath, LlamaModelQuantizeParams* parameters);

    // ---- LoRA ----
    [LibraryImport(Llama, StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint llama_adapter_lora_init(SafeLlamaModelHandle model, string path);
    [LibraryImport(Llama)] public static partial void llama_adapter_lora_free(nint adapter);
    [LibraryImport(Llama)] public static partial int llama_set_adapters_lora(SafeLlamaContextHandle ctx, nint* adapters, nuint count, float* scales);

    // ---- context ----
    [LibraryImport(Llama)] public static partial nint llama_init_from_model(SafeLlamaModelHandle model, LlamaContextParams parameters);
    [LibraryImport(Llama)] public static partial void llama_free(nint ctx);
    [LibraryImport(Llama)] public static partial uint llama_n_ctx(SafeLlamaContextHandle ctx);
    [LibraryImport(Llama)] public static partial uint llama_n_batch(SafeLlamaContextHandle ctx);
    [LibraryImport(Llama)] public static partial uint llama_n_ubatch(SafeLlamaContextHandle ctx);
    [LibraryImport(Llama)] public static partial uint llama_n_seq_max(SafeLlamaContextHandle ctx);
    [LibraryImport(Llama)] public static partial nint llama_get_memory(SafeLlamaContextHandle ctx);
    [LibraryImport(Llama)] public static partial int llama_decode(SafeLlamaContextHandle ctx, LlamaBatchNative batch);
    [LibraryImport(Llama)] public static partial float* llama_get_logits_ith(SafeLlamaContextHandle ctx, int i);
    [LibraryImport(Llama)] public static partial void llama_synchronize(SafeLlamaContextHandle ctx);

    // ---- memory (KV cache) ----
    [LibraryImport(Llama)] public static partial void llama_memory_clear(nint mem, [MarshalAs(UnmanagedType.U1)] bool data);
    [LibraryImport(Llama)] [return: MarshalAs(UnmanagedType.U1)] public static partial bool llama_memory_seq_rm(nint mem, int seqId, int p0, int p1);
    [LibraryImport(Llama)] public static partial void llama_memory_seq_cp(nint mem, int src, int dst, int p0, int p1);
    [LibraryImport(Llama)] public static partial void llama_memory_seq_keep(nint mem, int seqId);
    [LibraryImport(Llama)] public static partial int llama_memory_seq_pos_min(nint mem, int seqId);
    [LibraryImport(Llama)] public static partial int llama_memory_seq_pos_max(nint mem, int seqId);

    // ---- batch ----
    [LibraryImport(Llama)] public static partial LlamaBatchNative llama_batch_init(int nTokens, int embd, int nSeqMax);
    [LibraryImport(Llama)] public static partial void llama_batch_free(LlamaBatchNative batch);

    // ---- vocab (pointer owned by the model) ----
    [LibraryImport(Llama)] public static partial int llama_vocab_n_tokens(nint vocab);
    [LibraryImport(Llama)] public static partial int llama_vocab_type(nint vocab);
    [LibraryImport(Llama)] public static partial int llama_vocab_bos(nint vocab);
    [LibraryImport(Llama)] public static partial int llama_vocab_eos(nint vocab);
    [LibraryImport(Llama)] public static partial int llama_vocab_eot(nint vocab);
    [LibraryImport(Llama)] public static partial int llama_vocab_nl(nint vocab);
    [LibraryImport(Llama)] public static partial int llama_vocab_pad(nint vocab);
    [LibraryImport(Llama)] [return: MarshalAs(UnmanagedType.U1)] public static partial bool llama_vocab_get_add_bos(nint vocab);
    [LibraryImport(Llama)] [return: MarshalAs(UnmanagedType.U1)] public static partial bool llama_vocab_get_add_eos(nint vocab);
    [LibraryImport(Llama)] [return: MarshalAs(UnmanagedType.U1)] public static partial bool llama_vocab_is_eog(nint vocab, int token);
    [LibraryImport(Llama)] [return: MarshalAs(UnmanagedType.U1)] public static partial bool llama_vocab_is_control(nint vocab, int token);
    [LibraryImport(Llama)] public static partial byte* llama_vocab_get_text(nint vocab, int token);
    [LibraryImport(Llama)] public static partial int llama_vocab_get_attr(nint vocab, int token);
    [LibraryImport(Llama)] public static partial int llama_tokenize(nint vocab, byte* text, int textLen, int* tokens, int nTokensMax,
        [MarshalAs(UnmanagedType.U1)] bool addSpecial, [MarshalAs(UnmanagedType.U1)] bool parseSpecial);
    [LibraryImport(Llama)] public static partial int llama_token_to_piece(nint vocab, int token, byte* buf, int length, int lstrip,
        [MarshalAs(UnmanagedType.U1)] bool special);
    [LibraryImport(Llama)] public static partial int llama_detokenize(nint vocab, int* tokens, int nTokens, byte* text, int textLenMax,
        [MarshalAs(UnmanagedType.U1)] bool removeSpecial, [MarshalAs(UnmanagedType.U1)] bool unparseSpecial);

    // ---- samplers ----
    [LibraryImport(Llama)] public static partial nint llama_sampler_chain_init(LlamaSamplerChainParams parameters);
    [LibraryImport(Llama)] public static partial void llama_sampler_chain_add(SafeLlamaSamplerHandle chain, nint sampler);
    [LibraryImport(Llama)] public static partial int llama_sampler_chain_n(SafeLlamaSamplerHandle chain);
    [LibraryImport(Llama)] public static partial nint llama_sampler_init_greedy();
    [LibraryImport(Llama)] public static partial nint llama_sampler_init_dist(uint seed);
    [LibraryImport(Llama)] public static partial nint llama_sampler_init_top_k(int k);
    [LibraryImport(Llama)] public static partial nint llama_sampler_init_top_p(float p, nuint minKeep);
    [LibraryImport(Llama)] public static partial nint llama_sampler_init_min_p(float p, nuint minKeep);
    [LibraryImport(Llama)] public static partial nint llama_sampler_init_temp(float t);
    [LibraryImport(Llama)] public static partial void llama_sampler_apply(SafeLlamaSamplerHandle sampler, LlamaTokenDataArray* candidates);
    [LibraryImport(Llama)] public static partial void llama_sampler_accept(SafeLlamaSamplerHandle sampler, int token);
    [LibraryImport(Llama)] public static partial void llama_sampler_reset(SafeLlamaSamplerHandle sampler);
    [LibraryImport(Llama)] public static partial void llama_sampler_free(nint sampler);

    // ---- ggml (backend registry) ----
    [LibraryImport(Ggml, StringMarshalling = StringMarshalling.Utf8)]
    public static partial void ggml_backend_load_all_from_path(string dirPath);
    [LibraryImport(Ggml)] public static partial nuint ggml_backend_reg_count();
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
        (GgmlBase, ["ggml_backend_tensor_get", "ggml_nbytes", "ggml_get_name", "ggml_tensor_overhead", "ggml_backend_dev_name"]),
        (Ggml, ["ggml_backend_load_all_from_path", "ggml_backend_dev_count", "ggml_backend_dev_get"]),
        // llama_load_mode_name / llama_n_rs_seq / llama_set_adapters_lora exist only in releases whose
        // llama_model_params / llama_context_params have the layout mirrored in NativeStructs.cs.
        (Llama, ["llama_backend_init", "llama_model_load_from_file", "llama_init_from_model", "llama_decode", "llama_get_memory",
                 "llama_memory_seq_cp", "llama_set_adapters_lora", "llama_load_mode_name", "llama_n_rs_seq", "llama_model_quantize",
                 "llama_sampler_chain_init", "llama_detokenize", "llama_model_chat_template"]),
    ];

    /// <summary>UTF-8 C string (owned by llama.cpp) to a managed string; null stays null.</summary>
    public static string? Str(byte* p) => p == null ? null : Marshal.PtrToStringUTF8((nint)p);
}
