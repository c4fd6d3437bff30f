using TorchSharp;
using static TorchSharp.torch;

namespace BuPO.Hybrid.Model;

/// <summary>
/// What a <see cref="TransformerModel.Forward(TokenBatch, ForwardOptions?)"/> computes and keeps. Block indices are 0-based
/// (CLI/code k; the paper's layer l = k + 1). Nothing is captured unless asked for, and no [tokens x vocab] tensor is
/// made except the final logits (when <see cref="ComputeLogits"/>).
/// </summary>
public sealed record ForwardOptions
{
    /// <summary>Run only blocks 0..k (BuPO's internal-policy pass): no later block, no final norm, no logits.</summary>
    public int? StopAfterBlock { get; init; }
    /// <summary>
    /// Compute the final logits [B, T, vocab] (only when every block runs). Default true. Training on a large vocabulary
    /// should turn it off and take log-probs from <see cref="InternalPolicyHead.FullPolicy"/> on <see cref="ForwardResult.LastHidden"/>
    /// (chunked, never [tokens x vocab] at once).
    /// </summary>
    public bool ComputeLogits { get; init; } = true;
    /// <summary>Keep the final-normed state RMSNorm_final(H^L) [B, T, d] (llama.cpp result_norm).</summary>
    public bool CaptureFinalNormed { get; init; }
    /// <summary>Keep the token embeddings H^0 (llama.cpp embd).</summary>
    public bool CaptureEmbeddings { get; init; }
    /// <summary>Blocks whose output residual h_k = H^{k+1} is kept (llama.cpp l_out-k).</summary>
    public IReadOnlySet<int> Residuals { get; init; } = EmptySet;
    /// <summary>Blocks whose normalized attention input X is kept (attn_norm-k).</summary>
    public IReadOnlySet<int> AttnNormInputs { get; init; } = EmptySet;
    /// <summary>Blocks whose attention module output A (after W_o, before the add) is kept (attn_out-k).</summary>
    public IReadOnlySet<int> AttnOutputs { get; init; } = EmptySet;
    /// <summary>Blocks whose residual after the attention add M is kept (ffn_inp-k).</summary>
    public IReadOnlySet<int> FfnInputs { get; init; } = EmptySet;
    /// <summary>Blocks whose normalized FFN input Y is kept (ffn_norm-k).</summary>
    public IReadOnlySet<int> FfnNormInputs { get; init; } = EmptySet;
    /// <summary>Blocks whose FFN module output F (before the add) is kept (ffn_out-k).</summary>
    public IReadOnlySet<int> FfnOutputs { get; init; } = EmptySet;
    /// <summary>
    /// Recompute each block in the backward pass instead of keeping its activations (when grad is enabled). A block
    /// with any capture other than its residual runs normally, so captured module outputs stay differentiable.
    /// Gradients reach parameters through <c>loss.backward()</c> (they are accumulated into <c>.grad</c>); they are
    /// not visible to <c>torch.autograd.grad(loss, parameters)</c> across a checkpointed block.
    /// </summary>
    public bool GradientCheckpointing { get; init; }

    private static readonly IReadOnlySet<int> EmptySet = new HashSet<int>();

    /// <summary>Default: all blocks, final logits only.</summary>
    public static ForwardOptions Default { get; } = new();

    /// <summary>Sets of block indices from a range.</summary>
    public static IReadOnlySet<int> Blocks(params int[] blocks) => new HashSet<int>(blocks);

    /// <summary>All blocks 0..n-1.</summary>
    public static IReadOnlySet<int> AllBlocks(int n) => new HashSet<int>(Enumerable.Range(0, n));

    /// <summary>True when block k has a capture other than its residual.</summary>
    internal bool HasInnerCapture(int k) =>
        AttnNormInputs.Contains(k) || AttnOutputs.Contains(k) || FfnInputs.Contains(k) || FfnNormInputs.Contains(k) || FfnOutputs.Contains(k);
}

/// <summary>
/// Results of a forward pass. Tensors are [B, T, ...] on the model's device; padding positions hold finite values of no
/// meaning. Dispose to free them (or let the caller's dispose scope do it: they are registered in the scope that was
/// current when Forward was called).
/// </summary>
public sealed class ForwardResult : IDisposable
{
    /// <summary>Final logits [B, T, vocab], or null when not computed.</summary>
    public Tensor? Logits { get; internal set; }
    /// <summary>RMSNorm_final(H^L) [B, T, d], when asked for.</summary>
    public Tensor? FinalNormed { get; internal set; }
    /// <summary>Residual after the last block that ran [B, T, d] (h_k for StopAfterBlock = k).</summary>
    public Tensor LastHidden { get; internal set; } = null!;
    /// <summary>Index of the last block that ran.</summary>
    public int LastBlock { get; internal set; }
    /// <summary>Token embeddings H^0, when asked for.</summary>
    public Tensor? Embeddings { get; internal set; }
    public Dictionary<int, Tensor> Residuals { get; } = new();
    public Dictionary<int, Tensor> AttnNormInputs { get; } = new();
    public Dictionary<int, Tensor> AttnOutputs { get; } = new();
    public Dictionary<int, Tensor> FfnInputs { get; } = new();
    public Dictionary<int, Tensor> FfnNormInputs { get; } = new();
    public Dictionary<int, Tensor> FfnOutputs { get; } = new();

    internal IEnumerable<Tensor> AllTensors()
    {
        IEnumerable<Tensor?> all = [Logits, FinalNormed, LastHidden, Embeddings];
        all = all.Concat(Residuals.Values).Concat(AttnNormInputs.Values).Concat(AttnOutputs.Values)
            .Concat(FfnInputs.Values).Concat(FfnNormInputs.Values).Concat(FfnOutputs.Values);
        return all.Where(t => t is not null).Select(t => t!).Distinct(ReferenceEqualityComparer.Instance).Cast<Tensor>();
    }

    internal void MoveToOuterDisposeScope()
    {
        foreach (var t in AllTensors()) t.MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        foreach (var t in AllTensors()) t.Dispose();
        Residuals.Clear(); AttnNormInputs.Clear(); AttnOutputs.Clear(); FfnInputs.Clear(); FfnNormInputs.Clear(); FfnOutputs.Clear();
        Logits = null; FinalNormed = null; Embeddings = null;
    }
}
