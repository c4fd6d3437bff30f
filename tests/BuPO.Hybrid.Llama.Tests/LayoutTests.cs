using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using BuPO.Hybrid.Llama.Native;

namespace BuPO.Hybrid.Llama.Tests;

/// <summary>Struct mirrors against the sizes and offsets computed from llama.h / ggml.h (LP64).</summary>
[Collection(LlamaCollection.Name)]
public class LayoutTests(LlamaFixture fx)
{
    [Fact]
    public unsafe void StructSizesAndOffsets()
    {
        Assert.Equal(80, Unsafe.SizeOf<LlamaModelParams>());
        Assert.Equal(72, (int)Marshal.OffsetOf<LlamaModelParams>(nameof(LlamaModelParams.vocab_only)));
        Assert.Equal(48, (int)Marshal.OffsetOf<LlamaModelParams>(nameof(LlamaModelParams.progress_callback)));
        Assert.Equal(160, Unsafe.SizeOf<LlamaContextParams>());
        Assert.Equal(88, (int)Marshal.OffsetOf<LlamaContextParams>(nameof(LlamaContextParams.cb_eval)));
        Assert.Equal(104, (int)Marshal.OffsetOf<LlamaContextParams>(nameof(LlamaContextParams.type_k)));
        Assert.Equal(133, (int)Marshal.OffsetOf<LlamaContextParams>(nameof(LlamaContextParams.kv_unified)));
        Assert.Equal(152, (int)Marshal.OffsetOf<LlamaContextParams>(nameof(LlamaContextParams.ctx_other)));
        Assert.Equal(56, Unsafe.SizeOf<LlamaBatchNative>());
        Assert.Equal(12, Unsafe.SizeOf<LlamaTokenData>());
        Assert.Equal(32, Unsafe.SizeOf<LlamaTokenDataArray>());
        Assert.Equal(64, Unsafe.SizeOf<LlamaModelQuantizeParams>());
        Assert.Equal(56, (int)Marshal.OffsetOf<LlamaModelQuantizeParams>(nameof(LlamaModelQuantizeParams.max_buf_size)));
        Assert.Equal(336, sizeof(GgmlTensor));
        Assert.Equal(16, (int)Marshal.OffsetOf<GgmlTensor>(nameof(GgmlTensor.ne)));
        Assert.Equal(48, (int)Marshal.OffsetOf<GgmlTensor>(nameof(GgmlTensor.nb)));
        Assert.Equal(256, (int)Marshal.OffsetOf<GgmlTensor>(nameof(GgmlTensor.name)));
    }

    [Fact]
    public unsafe void NativeDefaultsReadBackThroughTheMirrors()
    {
        Assert.True(LlamaBackend.IsInitialized);
        Assert.NotEmpty(LlamaBackend.Devices);
        Assert.Equal(32u + 336u, (uint)LlamaNative.ggml_tensor_overhead()); // sizeof(ggml_object) + GGML_TENSOR_SIZE
        var cp = LlamaNative.llama_context_default_params();
        Assert.Equal((512u, 2048u, 512u, 1u, 1u), (cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_seq_max, cp.n_outputs_max_per_seq));
        Assert.Equal(-1f, cp.defrag_thold);
        Assert.Equal((1, 1, 1, 0), (cp.offload_kqv, cp.no_perf, cp.swa_full, cp.kv_unified));
        var mp = LlamaNative.llama_model_default_params();
        Assert.Equal((-1, 1, -1, 1), (mp.n_gpu_layers, mp.split_mode, mp.load_mode, mp.lazy_mode));
        Assert.Equal((0, 0, 1, 0, 0, 0), (mp.vocab_only, mp.check_tensors, mp.use_extra_bufts, mp.no_host, mp.no_alloc, mp.load_mtp));
        var qp = LlamaNative.llama_model_quantize_default_params();
        Assert.Equal((0, 7, 43, 43), (qp.nthread, qp.ftype, qp.output_tensor_type, qp.token_embedding_type));
        Assert.Equal((0, 1, 0, 0, 0, 0), (qp.allow_requantize, qp.quantize_output_tensor, qp.only_copy, qp.pure, qp.keep_split, qp.dry_run));
        Assert.Equal(8ul << 30, (ulong)qp.max_buf_size); // LLAMA_QUANT_MAX_BUF_SIZE
    }

    [Fact]
    public void InitializeIsIdempotentAndRefusesAnotherFolder()
    {
        LlamaBackend.Initialize(log: (l, s) => fx.Log.Add(s));
        LlamaBackend.Initialize(LlamaBackend.LibraryDirectory);
        var other = Directory.CreateTempSubdirectory("bupo-llama-other-").FullName;
        try
        {
            var e = Assert.Throws<BupoException>(() => LlamaBackend.Initialize(other));
            Assert.Contains("already loaded", e.Message);
        }
        finally
        {
            Directory.Delete(other);
            LlamaBackend.Initialize(log: (level, line) => fx.Log.Add($"{level}: {line}"));
        }
    }
}
