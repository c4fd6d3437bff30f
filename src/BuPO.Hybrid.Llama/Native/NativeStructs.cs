using System.Runtime.InteropServices;

namespace BuPO.Hybrid.Llama.Native;

// The one C struct we mirror ourselves (LLamaSharp does not bind ggml's tensor API): ggml.h of the ggml inside llama.cpp
// 815a2a59, the commit LLamaSharp 0.30.0 binds. The llama.cpp structs (llama_context_params, llama_model_params,
// llama_batch, ...) are LLamaSharp's; LlamaLayout checks all of them against the loaded library.

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
