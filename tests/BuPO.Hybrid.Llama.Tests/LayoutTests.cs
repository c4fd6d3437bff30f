using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using BuPO.Hybrid.Llama.Native;
using LLama.Native;

namespace BuPO.Hybrid.Llama.Tests;

/// <summary>
/// The structs passed to llama.cpp by value: LLamaSharp's mirrors against llama.h of 815a2a59 (LP64), our ggml_tensor
/// mirror, and LlamaLayout's check of all of them against the loaded library (and against images of another build).
/// </summary>
[Collection(LlamaCollection.Name)]
public class LayoutTests(LlamaFixture fx)
{
    [Fact]
    public unsafe void StructSizesAndOffsets()
    {
        Assert.Equal(160, Unsafe.SizeOf<LLamaContextParams>());
        Assert.Equal(88, (int)Marshal.OffsetOf<LLamaContextParams>(nameof(LLamaContextParams.cb_eval)));
        Assert.Equal(104, (int)Marshal.OffsetOf<LLamaContextParams>(nameof(LLamaContextParams.type_k)));
        Assert.Equal(133, (int)Marshal.OffsetOf<LLamaContextParams>("_kv_unified"));
        Assert.Equal(152, (int)Marshal.OffsetOf<LLamaContextParams>(nameof(LLamaContextParams.ctx_other)));
        Assert.Equal(56, Unsafe.SizeOf<LLamaNativeBatch>());
        Assert.Equal(12, Unsafe.SizeOf<LLamaTokenData>());
        Assert.Equal(32, Unsafe.SizeOf<LLamaTokenDataArrayNative>());
        Assert.Equal(56, Unsafe.SizeOf<LLamaModelQuantizeParams>());
        Assert.Equal(48, (int)Marshal.OffsetOf<LLamaModelQuantizeParams>(nameof(LLamaModelQuantizeParams.prune_layers)));
        Assert.Equal(72, Marshal.SizeOf<LLamaModelParams>()); // native size (the managed struct holds a delegate)
        Assert.Equal(336, sizeof(GgmlTensor));
        Assert.Equal(16, (int)Marshal.OffsetOf<GgmlTensor>(nameof(GgmlTensor.ne)));
        Assert.Equal(48, (int)Marshal.OffsetOf<GgmlTensor>(nameof(GgmlTensor.nb)));
        Assert.Equal(256, (int)Marshal.OffsetOf<GgmlTensor>(nameof(GgmlTensor.name)));
    }

    [Fact]
    public void TheLoadedLibraryMatchesEveryStructPassedByValue()
    {
        Assert.True(LlamaBackend.IsInitialized);
        Assert.NotEmpty(LlamaBackend.Devices);
        var libs = LlamaLibraryLoader.Loaded!;
        Assert.Null(LlamaLayout.FirstProblem(libs.Llama));
        Assert.Equal(32u + 336u, (uint)LlamaNative.ggml_tensor_overhead()); // sizeof(ggml_object) + GGML_TENSOR_SIZE
        var cp = LLamaContextParams.Default();
        Assert.Equal((512u, 2048u, 512u, 1u, 4), (cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_seq_max, cp.n_threads));
        Assert.Equal(-1f, cp.defrag_threshold);
        Assert.Equal((true, true, true, false), (cp.offload_kqv, cp.no_perf, cp.swa_full, cp.kv_unified));
        var mp = LLamaModelParams.Default();
        Assert.Equal((-1, GPUSplitMode.Layer, LLamaLoadMode.MemoryMap), (mp.n_gpu_layers, mp.split_mode, mp.load_mode));
        Assert.Equal((false, false, true, false, false, false), (mp.vocab_only, mp.check_tensors, mp.use_extra_bufts, mp.no_host, mp.no_alloc, mp.load_mtp));
        var qp = LLamaModelQuantizeParams.Default();
        Assert.Equal((0, LLamaFtype.MOSTLY_Q8_0, 43, 43), (qp.nthread, qp.ftype, (int)qp.output_tensor_type, (int)qp.token_embedding_type));
        Assert.Equal((false, true, false, false, false, false), (qp.allow_requantize, qp.quantize_output_tensor, qp.only_copy, qp.pure, qp.keep_split, qp.dry_run));
    }

    /// <summary>The default llama_context_params as the loaded library writes them (815a2a59: 160 bytes).</summary>
    private static byte[] GoodContextParams()
    {
        var p = LLamaContextParams.Default();
        var bytes = new byte[1024];
        MemoryMarshal.Write(bytes, in p);
        return bytes;
    }

    [Fact]
    public void ALibraryOfAnotherCommitFailsWithOneLineNamingTheStruct()
    {
        var good = GoodContextParams();
        Assert.Null(LlamaLayout.ContextParams(new LlamaLayout.Written(good, 160)));

        // llama.cpp v0.5.0 (node-llama-cpp 3.22.1) inserts n_outputs_max_per_seq (default 1) after n_outputs_max: the
        // same 160 bytes, every later field four bytes on (the padding before cb_eval absorbs it).
        var v050 = new byte[1024];
        good.AsSpan(0, 24).CopyTo(v050);
        BitConverter.GetBytes(1u).CopyTo(v050, 24);
        good.AsSpan(24, 60).CopyTo(v050.AsSpan(28));
        good.AsSpan(88, 72).CopyTo(v050.AsSpan(88));
        var problem = LlamaLayout.ContextParams(new LlamaLayout.Written(v050, 160));
        Assert.NotNull(problem);
        Assert.Contains("llama_context_params", problem);
        Assert.Contains("n_threads reads 1", problem);
        var line = LlamaLayout.Message("/x/libllama.v0.5.0.so", problem!);
        Assert.DoesNotContain('\n', line);
        Assert.Contains("/x/libllama.v0.5.0.so", line);
        Assert.Contains(LlamaBackend.LlamaCppCommit, line);

        // A struct that grew (v0.5.0's llama_model_params: 80 bytes, lazy_mode added) or shrank.
        Assert.Contains("llama_model_params differs: the library writes 78 bytes of it, LLamaSharp's struct has 72",
            LlamaLayout.ModelParams(new LlamaLayout.Written(new byte[1024], 78)));
        Assert.Contains("llama_model_quantize_params differs: the library writes 48 bytes",
            LlamaLayout.QuantizeParams(new LlamaLayout.Written(new byte[1024], 48)));
        Assert.Contains("llama_batch differs: the library writes 64 bytes", LlamaLayout.BatchLayout(new LlamaLayout.Written(new byte[1024], 64), 8));
        Assert.Contains("ggml_tensor differs", LlamaLayout.TensorOverhead(32 + 352));
        Assert.Null(LlamaLayout.TensorOverhead(32 + 336));
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
