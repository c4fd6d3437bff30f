using TorchSharp.Modules;

namespace BuPO.Hybrid.Model;

/// <summary>
/// The parameters of one decoder block, one per GGUF tensor (<c>blk.N.*</c>), in torch layout: a GGUF tensor with
/// ne = [in, out] is a [out, in] matrix, as torch's <c>linear</c> wants it. Optional tensors are null when absent.
/// </summary>
public sealed class BlockWeights
{
    public int Index { get; init; }
    public Parameter AttnNorm { get; internal set; } = null!;
    /// <summary>Separate Q/K/V projections (null when the file has a fused <c>attn_qkv</c>).</summary>
    public Parameter? Wq { get; internal set; }
    public Parameter? Wk { get; internal set; }
    public Parameter? Wv { get; internal set; }
    /// <summary>Fused QKV projection [(H + 2 Hkv) d, n_embd], when the file has one.</summary>
    public Parameter? Wqkv { get; internal set; }
    public Parameter? Bq { get; internal set; }
    public Parameter? Bk { get; internal set; }
    public Parameter? Bv { get; internal set; }
    public Parameter? Bqkv { get; internal set; }
    public Parameter Wo { get; internal set; } = null!;
    public Parameter? Bo { get; internal set; }
    /// <summary>qwen3 per-head RMSNorm weights of Q and K [head_dim].</summary>
    public Parameter? QNorm { get; internal set; }
    public Parameter? KNorm { get; internal set; }
    public Parameter FfnNorm { get; internal set; } = null!;
    public Parameter Gate { get; internal set; } = null!;
    public Parameter Up { get; internal set; } = null!;
    public Parameter Down { get; internal set; } = null!;
    public Parameter? GateB { get; internal set; }
    public Parameter? UpB { get; internal set; }
    public Parameter? DownB { get; internal set; }

    /// <summary>Every parameter of the block.</summary>
    public IEnumerable<Parameter> Parameters()
    {
        Parameter?[] all = [AttnNorm, Wq, Wk, Wv, Wqkv, Bq, Bk, Bv, Bqkv, Wo, Bo, QNorm, KNorm, FfnNorm, Gate, Up, Down, GateB, UpB, DownB];
        return all.Where(p => p is not null).Select(p => p!);
    }

    internal bool Assign(string suffix, Parameter p)
    {
        switch (suffix)
        {
            case "attn_norm.weight": AttnNorm = p; break;
            case "attn_q.weight": Wq = p; break;
            case "attn_k.weight": Wk = p; break;
            case "attn_v.weight": Wv = p; break;
            case "attn_qkv.weight": Wqkv = p; break;
            case "attn_q.bias": Bq = p; break;
            case "attn_k.bias": Bk = p; break;
            case "attn_v.bias": Bv = p; break;
            case "attn_qkv.bias": Bqkv = p; break;
            case "attn_output.weight": Wo = p; break;
            case "attn_output.bias": Bo = p; break;
            case "attn_q_norm.weight": QNorm = p; break;
            case "attn_k_norm.weight": KNorm = p; break;
            case "ffn_norm.weight": FfnNorm = p; break;
            case "ffn_gate.weight": Gate = p; break;
            case "ffn_up.weight": Up = p; break;
            case "ffn_down.weight": Down = p; break;
            case "ffn_gate.bias": GateB = p; break;
            case "ffn_up.bias": UpB = p; break;
            case "ffn_down.bias": DownB = p; break;
            default: return false;
        }
        return true;
    }

    /// <summary>Names of required tensors that are missing (empty when complete).</summary>
    internal IEnumerable<string> Missing()
    {
        if (AttnNorm is null) yield return "attn_norm.weight";
        if (Wqkv is null)
        {
            if (Wq is null) yield return "attn_q.weight";
            if (Wk is null) yield return "attn_k.weight";
            if (Wv is null) yield return "attn_v.weight";
        }
        if (Wo is null) yield return "attn_output.weight";
        if (FfnNorm is null) yield return "ffn_norm.weight";
        if (Gate is null) yield return "ffn_gate.weight";
        if (Up is null) yield return "ffn_up.weight";
        if (Down is null) yield return "ffn_down.weight";
    }
}
