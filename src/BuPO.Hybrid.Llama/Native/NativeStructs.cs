using System.Runtime.InteropServices;

namespace BuPO.Hybrid.Llama.Native;

// Blittable mirrors of the llama.cpp / ggml C structs of the release the binding targets (llama.h of
// node-llama-cpp 3.22.1's llama.cpp, "v0.5.0" binaries). C `bool` is one byte: mirrored as byte.
// Offsets are given in comments (x86-64 / aarch64 LP64); LlamaLayoutTests checks them with Marshal.OffsetOf
// and compares the defaults returned by llama_*_default_params() with llama.cpp's source.

/// <summary>struct llama_model_params (80 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct LlamaModelParams
{
    public nint devices;                      //  0 ggml_backend_dev_t * (NULL-terminated; NULL = all)
    public nint tensor_buft_overrides;        //  8
    public int n_gpu_layers;                  // 16 negative = all
    public int split_mode;                    // 20 enum llama_split_mode
    public int load_mode;                     // 24 enum llama_load_mode (-1 auto, 0 none, 1 mmap, ...)
    public int lazy_mode;                     // 28 enum llama_lazy_mode
    public int main_gpu;                      // 32
    public float* tensor_split;               // 40
    public delegate* unmanaged<float, void*, byte> progress_callback; // 48 bool (*)(float, void *)
    public void* progress_callback_user_data; // 56
    public nint kv_overrides;                 // 64
    public byte vocab_only;                   // 72
    public byte check_tensors;                // 73
    public byte use_extra_bufts;              // 74
    public byte no_host;                      // 75
    public byte no_alloc;                     // 76
    public byte load_mtp;                     // 77  (+2 padding -> 80)
}

/// <summary>struct llama_context_params (160 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct LlamaContextParams
{
    public uint n_ctx;                    //   0
    public uint n_batch;                  //   4
    public uint n_ubatch;                 //   8
    public uint n_seq_max;                //  12
    public uint n_rs_seq;                 //  16
    public uint n_outputs_max;            //  20
    public uint n_outputs_max_per_seq;    //  24
    public int n_threads;                 //  28
    public int n_threads_batch;           //  32
    public int ctx_type;                  //  36
    public int rope_scaling_type;         //  40
    public int pooling_type;              //  44
    public int attention_type;            //  48
    public int flash_attn_type;           //  52 (-1 auto, 0 off, 1 on)
    public float rope_freq_base;          //  56
    public float rope_freq_scale;         //  60
    public float yarn_ext_factor;         //  64
    public float yarn_attn_factor;        //  68
    public float yarn_beta_fast;          //  72
    public float yarn_beta_slow;          //  76
    public uint yarn_orig_ctx;            //  80
    public float defrag_thold;            //  84
    public delegate* unmanaged<GgmlTensor*, byte, void*, byte> cb_eval; // 88 ggml_backend_sched_eval_callback
    public void* cb_eval_user_data;       //  96
    public int type_k;                    // 104 enum ggml_type
    public int type_v;                    // 108
    public nint abort_callback;           // 112
    public void* abort_callback_data;     // 120
    public byte embeddings;               // 128
    public byte offload_kqv;              // 129
    public byte no_perf;                  // 130
    public byte op_offload;               // 131
    public byte swa_full;                 // 132
    public byte kv_unified;               // 133 (+2 padding)
    public nint samplers;                 // 136 struct llama_sampler_seq_config *
    public nuint n_samplers;              // 144
    public nint ctx_other;                // 152 -> 160
}

/// <summary>struct llama_batch (56 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct LlamaBatchNative
{
    public int n_tokens;      //  0
    public int* token;        //  8
    public float* embd;       // 16
    public int* pos;          // 24
    public int* n_seq_id;     // 32
    public int** seq_id;      // 40
    public sbyte* logits;     // 48
}

/// <summary>struct llama_token_data (12 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct LlamaTokenData
{
    public int id;
    public float logit;
    public float p;
}

/// <summary>struct llama_token_data_array (32 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct LlamaTokenDataArray
{
    public LlamaTokenData* data; //  0
    public nuint size;           //  8
    public long selected;        // 16 index into data, not a token id
    public byte sorted;          // 24
}

/// <summary>struct llama_sampler_chain_params (1 byte).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct LlamaSamplerChainParams
{
    public byte no_perf;
}

/// <summary>struct llama_model_quantize_params (64 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct LlamaModelQuantizeParams
{
    public int nthread;                  //  0
    public int ftype;                    //  4 enum llama_ftype
    public int output_tensor_type;       //  8 enum ggml_type (GGML_TYPE_COUNT = default)
    public int token_embedding_type;     // 12
    public byte allow_requantize;        // 16
    public byte quantize_output_tensor;  // 17
    public byte only_copy;               // 18
    public byte pure;                    // 19
    public byte keep_split;              // 20
    public byte dry_run;                 // 21 (+2 padding)
    public nint imatrix;                 // 24
    public nint kv_overrides;            // 32
    public nint tt_overrides;            // 40
    public nint prune_layers;            // 48
    public nuint max_buf_size;           // 56 -> 64
}

/// <summary>struct llama_chat_message (16 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct LlamaChatMessageNative
{
    public byte* role;
    public byte* content;
}

/// <summary>
/// struct ggml_tensor (GGML_TENSOR_SIZE = 336 bytes with GGML_MAX_DIMS 4, GGML_MAX_OP_PARAMS 64, GGML_MAX_SRC 10,
/// GGML_MAX_NAME 64). Only read, never allocated by us; checked against ggml_tensor_overhead() - sizeof(ggml_object).
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct GgmlTensor
{
    public const int MaxName = 64;

    public int type;                 //   0 enum ggml_type
    public nint buffer;              //   8
    public fixed long ne[4];         //  16 elements per dimension
    public fixed ulong nb[4];        //  48 strides in bytes
    public int op;                   //  80
    public fixed int op_params[16];  //  84
    public int flags;                // 148
    public fixed long src[10];       // 152 struct ggml_tensor * [10]
    public nint view_src;            // 232
    public nuint view_offs;          // 240
    public void* data;               // 248
    public fixed byte name[MaxName]; // 256
    public void* extra;              // 320
    public fixed byte padding[8];    // 328 -> 336
}

internal static class GgmlTypes
{
    public const int F32 = 0, F16 = 1, BF16 = 30, Count = 43;
}

internal enum LlamaFType
{
    AllF32 = 0, MostlyF16 = 1, Q4_0 = 2, Q4_1 = 3, Q8_0 = 7, Q5_0 = 8, Q5_1 = 9, Q2_K = 10, Q3_K_S = 11, Q3_K_M = 12,
    Q3_K_L = 13, Q4_K_S = 14, Q4_K_M = 15, Q5_K_S = 16, Q5_K_M = 17, Q6_K = 18, IQ2_XXS = 19, IQ2_XS = 20, Q2_K_S = 21,
    IQ3_XS = 22, IQ3_XXS = 23, IQ1_S = 24, IQ4_NL = 25, IQ3_S = 26, IQ3_M = 27, IQ2_S = 28, IQ2_M = 29, IQ4_XS = 30,
    IQ1_M = 31, BF16 = 32, TQ1_0 = 36, TQ2_0 = 37, MXFP4_MOE = 38, NVFP4 = 39, Q1_0 = 40, Q2_0 = 41,
}
