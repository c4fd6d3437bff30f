using TorchSharp;
using static TorchSharp.torch;

namespace BuPO.Hybrid.Model;

/// <summary>The normalization applied to a hidden state before the unembedding.</summary>
public enum LensNorm
{
    /// <summary>None: π^l = softmax(h_l · E_uᵀ / T), BuPO's internal policy (spec section 2). The default.</summary>
    Identity,
    /// <summary>The model's final RMSNorm first (logit lens). On the last block's residual this is the full policy.</summary>
    Final,
}

/// <summary>
/// An internal policy read off a hidden state: logits = N(h) · E_uᵀ / T with E_u the model's unembedding. Log-probs and
/// entropies are computed in chunks of <see cref="ChunkSize"/> positions by custom autograd functions that recompute
/// each chunk's logits in backward, so neither pass ever holds more than [chunk x vocab] floats (besides the [vocab x d]
/// gradient of E_u). Both are differentiable with respect to the hidden state, E_u and the output bias.
/// The output bias (output.bias, some qwen2 files) is part of the head only for <see cref="LensNorm.Final"/>: BuPO's
/// internal policy is defined without it.
/// Under mixed precision the unembedding and bias enter as bf16 copies of the float32 masters (the matmul runs in the
/// hidden state's type, as autocast runs a linear) while the log-softmax, log-probs and entropies are float32.
/// </summary>
public sealed class InternalPolicyHead
{
    private readonly TransformerModel _model;

    public LensNorm Norm { get; }
    public double Temperature { get; }
    public int ChunkSize { get; }

    public InternalPolicyHead(TransformerModel model, LensNorm norm = LensNorm.Identity, double temperature = 1.0, int chunkSize = 1024)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (!(temperature > 0) || double.IsInfinity(temperature)) throw new ArgumentOutOfRangeException(nameof(temperature), "temperature must be positive");
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(chunkSize);
        _model = model; Norm = norm; Temperature = temperature; ChunkSize = chunkSize;
    }

    /// <summary>The full policy: final norm, unembedding, output bias, temperature, applied to the last block's residual.</summary>
    public static InternalPolicyHead FullPolicy(TransformerModel model, double temperature = 1.0, int chunkSize = 1024)
        => new(model, LensNorm.Final, temperature, chunkSize);

    private Tensor? Bias => Norm == LensNorm.Final ? _model.OutputBias : null;

    /// <summary>E_u and the bias in the type of <paramref name="x"/> (cast once per call, not per chunk).</summary>
    private (Tensor U, Tensor? Bias) HeadWeights(Tensor x)
        => (TransformerModel.As(_model.Unembedding, x.dtype), Bias is { } b ? TransformerModel.As(b, x.dtype) : null);

    /// <summary>N(h): identity or the final RMSNorm.</summary>
    public Tensor Normalize(Tensor hidden) => Norm == LensNorm.Final ? TransformerModel.RmsNorm(hidden, _model.OutputNorm, _model.Config.RmsEps) : hidden;

    /// <summary>Materialized logits [..., vocab] (float32, or float64 for a float64 model). For small inputs and tests.</summary>
    public Tensor Logits(Tensor hidden)
    {
        using var scope = NewDisposeScope();
        var x = Normalize(hidden);
        var (u, bias) = HeadWeights(x);
        var z = nn.functional.linear(x, u, bias);
        using var invT = (1.0 / Temperature).ToScalar();
        return z.to_type(WideType(z.dtype)).mul(invT).MoveToOuterDisposeScope();
    }

    /// <summary>log π(target) for every position: hidden [..., d], targets [...] (int64) → [...].</summary>
    public Tensor LogProbs(Tensor hidden, Tensor targets)
    {
        using var scope = NewDisposeScope();
        var lead = hidden.shape[..^1];
        var x = Normalize(hidden).reshape(-1, hidden.shape[^1]);
        var t = targets.to(ScalarType.Int64, hidden.device).reshape(-1);
        if (t.shape[0] != x.shape[0]) throw new ArgumentException($"targets [{string.Join(", ", targets.shape)}] do not match hidden [{string.Join(", ", hidden.shape)}]");
        var (u, bias) = HeadWeights(x);
        var lp = ChunkedTargetLogProb.apply(x, u, bias, t, 1.0 / Temperature, ChunkSize);
        return lp.reshape(lead).MoveToOuterDisposeScope();
    }

    /// <summary>Entropy of the policy in nats for every position: hidden [..., d] → [...].</summary>
    public Tensor Entropy(Tensor hidden)
    {
        using var scope = NewDisposeScope();
        var lead = hidden.shape[..^1];
        var x = Normalize(hidden).reshape(-1, hidden.shape[^1]);
        var (u, bias) = HeadWeights(x);
        var h = ChunkedEntropy.apply(x, u, bias, 1.0 / Temperature, ChunkSize);
        return h.reshape(lead).MoveToOuterDisposeScope();
    }

    internal static ScalarType WideType(ScalarType t) => t == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;

    /// <summary>Scaled logits of rows [start, start+n) in the wide type.</summary>
    internal static Tensor ChunkLogits(Tensor x, Tensor u, Tensor? bias, double invT, long start, long n)
    {
        var z = nn.functional.linear(x.narrow(0, start, n), u, bias);
        using var s = invT.ToScalar();
        return z.to_type(WideType(x.dtype)).mul(s);
    }
}

/// <summary>log softmax(x·uᵀ + b)·invT at the targets, chunked over rows; backward recomputes each chunk.</summary>
internal sealed class ChunkedTargetLogProb : autograd.SingleTensorFunction<ChunkedTargetLogProb>
{
    public override string Name => "BuPOChunkedTargetLogProb";

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var x = (Tensor)vars[0]; var u = (Tensor)vars[1]; var bias = vars[2] as Tensor; var targets = (Tensor)vars[3];
        var invT = (double)vars[4]; var chunk = (int)vars[5];
        var result = ChunkedUnembedding.Forward(x, u, bias, invT, chunk, (z, s, len) =>
            z.gather(1, targets.narrow(0, s, len).unsqueeze(1)).squeeze(1) - z.logsumexp(1));
        ChunkedUnembedding.Save(ctx, x, u, bias, invT, chunk, targets);
        return result;
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad)
    {
        return ChunkedUnembedding.Backward(ctx, grad, (extra, z, g, s, len) =>
        {
            var targets = extra[0];
            // d/dz [z_t - lse(z)] = onehot(t) - softmax(z)
            var gz = softmax(z, 1) * g.neg().unsqueeze(1);
            return gz.scatter_add_(1, targets.narrow(0, s, len).unsqueeze(1), g.unsqueeze(1));
        }, extraNulls: 3);
    }
}

/// <summary>Entropy of softmax((x·uᵀ + b)·invT), chunked over rows; backward recomputes each chunk.</summary>
internal sealed class ChunkedEntropy : autograd.SingleTensorFunction<ChunkedEntropy>
{
    public override string Name => "BuPOChunkedEntropy";

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var x = (Tensor)vars[0]; var u = (Tensor)vars[1]; var bias = vars[2] as Tensor;
        var invT = (double)vars[3]; var chunk = (int)vars[4];
        var result = ChunkedUnembedding.Forward(x, u, bias, invT, chunk, (z, _, _) =>
        {
            var logp = z.log_softmax(1);
            return -(logp.exp() * logp).sum(1);
        });
        ChunkedUnembedding.Save(ctx, x, u, bias, invT, chunk);
        return result;
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad)
    {
        return ChunkedUnembedding.Backward(ctx, grad, (_, z, g, _, _) =>
        {
            // H = -Σ p log p;  dH/dz_j = -p_j (z_j - Σ_i p_i z_i)
            var p = softmax(z, 1);
            var mean = (p * z).sum(1, keepdim: true);
            return p * (z - mean) * g.neg().unsqueeze(1);
        }, extraNulls: 2);
    }
}

/// <summary>
/// What the chunked functions of (x·uᵀ + b)·invT share: the forward loop over row chunks, the saved state, and the
/// backward that recomputes each chunk's logits (so no [rows, V] tensor outlives its chunk).
/// </summary>
internal static class ChunkedUnembedding
{
    /// <summary>
    /// Shared forward: one value per row, <paramref name="perRow"/> (chunk logits, start, length) of each chunk's
    /// logits, in the wide type; each chunk's temporaries are freed before the next.
    /// </summary>
    public static Tensor Forward(Tensor x, Tensor u, Tensor? bias, double invT, int chunk, Func<Tensor, long, long, Tensor> perRow)
    {
        var n = x.shape[0];
        var result = empty(n, InternalPolicyHead.WideType(x.dtype), x.device);
        for (long s = 0; s < n; s += chunk)
        {
            using var scope = NewDisposeScope();
            var len = Math.Min(chunk, n - s);
            var z = InternalPolicyHead.ChunkLogits(x, u, bias, invT, s, len);
            result.narrow(0, s, len).copy_(perRow(z, s, len));
        }
        return result;
    }

    /// <summary>
    /// Shared forward epilogue: saves x, u, the bias, then <paramref name="extra"/> tensors for
    /// <see cref="Backward"/>, with invT, the chunk size and which of x, u, bias want a gradient.
    /// </summary>
    public static void Save(autograd.AutogradContext ctx, Tensor x, Tensor u, Tensor? bias, double invT, int chunk, params Tensor[] extra)
    {
        ctx.save_for_backward([x, u, bias!, .. extra]);
        ctx.save_data("invT", invT);
        ctx.save_data("chunk", chunk);
        ctx.save_data("needs", new[] { x.requires_grad, u.requires_grad, bias?.requires_grad ?? false });
    }

    /// <summary>
    /// Shared backward: for each chunk, recompute z, get dL/dz from <paramref name="dz"/> (the extra saved tensors,
    /// chunk logits, chunk grad, start, length), scale by invT and push it to x, u and the bias. Returns a null
    /// gradient for each of the function's <paramref name="extraNulls"/> inputs after x, u and the bias.
    /// </summary>
    public static List<Tensor> Backward(autograd.AutogradContext ctx, Tensor grad,
        Func<IReadOnlyList<Tensor>, Tensor, Tensor, long, long, Tensor> dz, int extraNulls)
    {
        var saved = ctx.get_saved_variables();
        var x = saved[0]; var u = saved[1]; var bias = saved[2];
        var extra = saved.Skip(3).ToArray();
        var invT = (double)ctx.get_data("invT"); var chunk = (int)ctx.get_data("chunk"); var needs = (bool[])ctx.get_data("needs");
        var n = x.shape[0];
        var wide = InternalPolicyHead.WideType(x.dtype);
        Tensor? gx = null, gu = null, gb = null;
        using (no_grad())
        using (NewDisposeScope())
        {
            if (needs[0]) gx = zeros_like(x);
            if (needs[1]) gu = zeros(u.shape, wide, u.device);
            if (needs[2] && bias is not null) gb = zeros(bias.shape, wide, bias.device);
            var g = grad.to_type(wide);
            for (long s = 0; s < n; s += chunk)
            {
                using var scope = NewDisposeScope();
                var len = Math.Min(chunk, n - s);
                var z = InternalPolicyHead.ChunkLogits(x, u, bias, invT, s, len);
                using var scale = invT.ToScalar();
                var gz = dz(extra, z, g.narrow(0, s, len), s, len).mul(scale); // [len, V] wide
                if (gx is not null) gx.narrow(0, s, len).copy_(gz.to_type(u.dtype).matmul(u));
                if (gu is not null) gu.add_(gz.t().matmul(x.narrow(0, s, len).to_type(wide)), ScalarConstants.One);
                if (gb is not null) gb.add_(gz.sum(0), ScalarConstants.One);
            }
            gx = gx?.MoveToOuterDisposeScope();
            gu = gu?.to_type(u.dtype).MoveToOuterDisposeScope();
            gb = gb?.to_type(bias!.dtype).MoveToOuterDisposeScope();
        }
        var result = new List<Tensor> { gx!, gu!, gb! };
        for (var i = 0; i < extraNulls; i++) result.Add(null!);
        return result;
    }
}
