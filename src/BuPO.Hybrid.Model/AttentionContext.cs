using TorchSharp;
using static TorchSharp.torch;

namespace BuPO.Hybrid.Model;

/// <summary>
/// Per-forward attention inputs shared by all blocks: the RoPE tables for the batch's positions and the mask.
/// <see cref="Mask"/> is null when every row is right-padded (plain causal attention already keeps real queries off the
/// trailing padding, and lets SDPA use its fused kernels); otherwise it is [B, 1, T, T] bool: key j is visible to query
/// i when j ≤ i and j is a real token (or j = i, so padded rows stay finite).
/// </summary>
internal sealed class AttentionContext
{
    public Tensor? Mask { get; private init; }
    /// <summary>The packed shared-prefix layout when the forward runs over a <see cref="PrefixGroupBatch"/> (its tensors are the batch's).</summary>
    public PrefixGroupBatch? Grouped { get; private init; }
    /// <summary>cos / sin of the rotation angles, [B, 1, T, d/2] in the compute type.</summary>
    public Tensor Cos { get; private init; } = null!;
    public Tensor Sin { get; private init; } = null!;
    public RopeStyle Style { get; private init; }

    /// <summary>Attention over a packed shared-prefix batch: RoPE at the batch's positions, masks from the batch.</summary>
    public static AttentionContext CreateGrouped(TransformerModel model, PrefixGroupBatch batch, Tensor positions)
    {
        var (cos, sin) = Rope(model, positions);
        return new AttentionContext { Grouped = batch, Cos = cos, Sin = sin, Style = model.Config.Rope };
    }

    public static AttentionContext Create(TransformerModel model, Tensor mask, Tensor positions)
    {
        var c = model.Config;
        var t = mask.shape[1];
        Tensor? attnMask = null;
        if (t > 1)
        {
            // A real token after a padded one anywhere means the batch is not purely right-padded.
            var notPrefix = (mask.narrow(1, 1, t - 1) & mask.narrow(1, 0, t - 1).logical_not()).any().item<bool>();
            if (notPrefix)
            {
                var causal = ones(t, t, ScalarType.Bool, mask.device).tril();
                var eye = torch.eye(t, t, ScalarType.Bool, mask.device);
                attnMask = (causal.unsqueeze(0) & (mask.unsqueeze(1) | eye.unsqueeze(0))).unsqueeze(1);
            }
        }

        var (cos, sin) = Rope(model, positions);
        return new AttentionContext { Mask = attnMask, Cos = cos, Sin = sin, Style = c.Rope };
    }

    /// <summary>cos / sin of the rotation angles at <paramref name="positions"/> [B, T]: [B, 1, T, d/2] in the compute type.</summary>
    private static (Tensor Cos, Tensor Sin) Rope(TransformerModel model, Tensor positions)
    {
        // theta_i = p · freq_scale · base^(-2i/d) / factor_i   (ggml_rope_ext, no YaRN)
        var c = model.Config;
        var half = c.HeadDim / 2;
        using var halfS = half.ToScalar();
        using var expScale = (-2.0 / c.HeadDim).ToScalar();
        using var freqScale = c.RopeFreqScale.ToScalar();
        var exponents = arange(ScalarConstants.Zero, halfS, ScalarType.Float64, positions.device).mul(expScale);
        var invFreq = pow(c.RopeFreqBase, exponents).mul(freqScale);
        if (model.RopeFreqFactors is { } ff) invFreq = invFreq / ff.to(ScalarType.Float64, positions.device);
        var angles = positions.to_type(ScalarType.Float64).unsqueeze(-1) * invFreq; // [B, T, d/2]
        var dtype = model.ComputeType;
        return (angles.cos().to_type(dtype).unsqueeze(1), angles.sin().to_type(dtype).unsqueeze(1));
    }

    /// <summary>Rotates x [B, H, T, d].</summary>
    public Tensor ApplyRope(Tensor x)
    {
        var d = x.shape[^1];
        if (Style == RopeStyle.Neox)
        {
            var x0 = x.narrow(-1, 0, d / 2);
            var x1 = x.narrow(-1, d / 2, d / 2);
            return cat([(x0 * Cos).sub(x1 * Sin), (x0 * Sin).add(x1 * Cos, ScalarConstants.One)], -1);
        }
        var last = x.dim() - 1;
        var pairs = x.unflatten(last, [d / 2, 2]);
        var a = pairs.select(last + 1, 0);
        var b = pairs.select(last + 1, 1);
        return stack([(a * Cos).sub(b * Sin), (a * Sin).add(b * Cos, ScalarConstants.One)], last + 1).flatten(last);
    }

    /// <summary>A copy whose tensors are owned by no dispose scope (kept alive for a recomputation in backward).</summary>
    public AttentionContext Detached() => _detached ??= new()
    {
        Mask = Mask?.alias().DetachFromDisposeScope(),
        Grouped = Grouped,
        Cos = Cos.alias().DetachFromDisposeScope(),
        Sin = Sin.alias().DetachFromDisposeScope(),
        Style = Style,
    };

    private AttentionContext? _detached;
}
