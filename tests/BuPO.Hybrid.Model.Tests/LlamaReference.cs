using BuPO.Hybrid.Llama;

namespace BuPO.Hybrid.Model.Tests;

/// <summary>Runs llama.cpp on one sequence at a time, logits (and optional probe captures) for every position.</summary>
internal static class LlamaReference
{
    private static readonly object Gate = new();
    private static bool _initialized;

    public static void EnsureBackend()
    {
        lock (Gate)
        {
            if (_initialized) return;
            LlamaBackend.Initialize(minLevel: LlamaLogLevel.Error);
            _initialized = true;
        }
    }

    /// <summary>
    /// Logits [T x vocab] of one sequence, decoded in one batch asking for every position's logits. The KV cache is F32 and
    /// flash attention off: llama.cpp's default F16 cache makes ggml round Q, K, V and the attention weights to F16
    /// (measured 1.2e-2 max logit difference on stories260K, against ~1e-5 in float32).
    /// </summary>
    public static float[][] Logits(LlamaModel model, IReadOnlyList<int> tokens, TensorProbe? probe = null)
    {
        using var ctx = LlamaContext.Create(model, new LlamaContextOptions
        {
            ContextSize = Math.Max(64, tokens.Count), BatchSize = Math.Max(32, tokens.Count), UBatchSize = Math.Max(32, tokens.Count),
            Threads = 2, Probe = probe, FlashAttention = false, KvCacheType = Gguf.GgmlType.F32,
        });
        using var batch = new LlamaBatch(tokens.Count);
        for (var i = 0; i < tokens.Count; i++) batch.Add(tokens[i], i, 0, wantLogits: true);
        ctx.Decode(batch);
        return Enumerable.Range(0, tokens.Count).Select(i => ctx.GetLogits(i).ToArray()).ToArray();
    }
}
