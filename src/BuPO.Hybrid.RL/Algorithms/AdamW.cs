using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace BuPO.Hybrid.RL.Algorithms;

/// <summary>
/// AdamW as PyTorch computes it (decoupled weight decay, bias-corrected moments), with state the trainer can save and
/// restore bit for bit. A parameter without a gradient (its <c>grad</c> undefined) is skipped entirely — no decay, no
/// moment update — as in PyTorch: during BuPO's IPA steps the blocks above k, the final norm and the output bias get no
/// gradient and stay exactly as they are; their state starts when they first get one (phase 2).
/// </summary>
public sealed class AdamW : IDisposable
{
    private readonly IReadOnlyList<KeyValuePair<string, Parameter>> _params;
    private readonly Dictionary<string, State> _state = new(StringComparer.Ordinal);

    public double Beta1 { get; }
    public double Beta2 { get; }
    public double Eps { get; }
    public double WeightDecay { get; }

    /// <summary>Optimizer steps taken (skipped steps do not count).</summary>
    public long Steps { get; private set; }

    private sealed class State
    {
        public required Tensor ExpAvg;
        public required Tensor ExpAvgSq;
        public long Step;
    }

    public AdamW(IReadOnlyList<KeyValuePair<string, Parameter>> namedParameters, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weightDecay = 0.01)
    {
        _params = namedParameters;
        Beta1 = beta1; Beta2 = beta2; Eps = eps; WeightDecay = weightDecay;
    }

    public IReadOnlyList<KeyValuePair<string, Parameter>> Parameters => _params;

    /// <summary>Sets every gradient to undefined (PyTorch's zero_grad(set_to_none=True)).</summary>
    public void ZeroGrad()
    {
        foreach (var (_, p) in _params)
        {
            var g = p.grad;
            if (g is null) continue;
            p.grad = null;
            g.Dispose();
        }
    }

    /// <summary>The global L2 norm of all defined gradients (float64 accumulation).</summary>
    public double GradNorm()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        double sq = 0;
        foreach (var (_, p) in _params)
        {
            var g = p.grad;
            if (g is null) continue;
            sq += g.to_type(ScalarType.Float64).pow(BuPO.Hybrid.Model.ScalarConstants.Two).sum().item<double>();
        }
        return Math.Sqrt(sq);
    }

    /// <summary>
    /// Global grad-norm clipping as PyTorch's clip_grad_norm_ does it: when <paramref name="norm"/> (from
    /// <see cref="GradNorm"/>) exceeds <paramref name="maxNorm"/> &gt; 0, scales every gradient by maxNorm / (norm + 1e-6).
    /// </summary>
    public void ClipGrads(double norm, double maxNorm)
    {
        if (maxNorm > 0 && norm > maxNorm) ScaleGrads(maxNorm / (norm + 1e-6));
    }

    /// <summary>Scales all gradients by <paramref name="factor"/>.</summary>
    public void ScaleGrads(double factor)
    {
        using var _ = no_grad();
        using var f = factor.ToScalar();
        foreach (var (_, p) in _params) p.grad?.mul_(f);
    }

    /// <summary>One AdamW update with learning rate <paramref name="lr"/> on every parameter that has a gradient.</summary>
    public void Step(double lr)
    {
        using var _ = no_grad();
        // Every Scalar is held (and disposed) here: TorchSharp 0.107 leaves implicitly converted ones to the GC,
        // whose finalizer thread can free one while libtorch still reads it (a native "toFloat" assertion).
        using var decay = (1 - lr * WeightDecay).ToScalar();
        using var b1 = Beta1.ToScalar();
        using var b1c = (1 - Beta1).ToScalar();
        using var b2 = Beta2.ToScalar();
        using var b2c = (1 - Beta2).ToScalar();
        using var eps = Eps.ToScalar();
        foreach (var (name, p) in _params)
        {
            var g = p.grad;
            if (g is null) continue;
            if (!_state.TryGetValue(name, out var s))
            {
                s = new State { ExpAvg = zeros_like(p).DetachFromDisposeScope(), ExpAvgSq = zeros_like(p).DetachFromDisposeScope() };
                _state[name] = s;
            }
            using var scope = NewDisposeScope();
            s.Step++;
            var bc1 = 1 - Math.Pow(Beta1, s.Step);
            var bc2 = 1 - Math.Pow(Beta2, s.Step);
            // The bias corrections depend on this parameter's own step count.
            using var sqrtBc2 = Math.Sqrt(bc2).ToScalar();
            using var step = (-lr / bc1).ToScalar();
            if (WeightDecay != 0) p.mul_(decay);
            s.ExpAvg.mul_(b1).add_(g, alpha: b1c);
            s.ExpAvgSq.mul_(b2).addcmul_(g, g, value: b2c);
            var denom = s.ExpAvgSq.sqrt().div_(sqrtBc2).add_(eps, BuPO.Hybrid.Model.ScalarConstants.One);
            p.addcdiv_(s.ExpAvg, denom, value: step);
        }
        Steps++;
    }

    /// <summary>The state as named tensors (CPU copies) plus per-parameter step counts, for checkpoints.</summary>
    public (IReadOnlyList<(string Name, Tensor Tensor)> Tensors, IReadOnlyDictionary<string, long> StepCounts) ExportState()
    {
        var tensors = new List<(string, Tensor)>();
        var steps = new Dictionary<string, long>();
        foreach (var (name, s) in _state.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            tensors.Add(($"{name}.exp_avg", s.ExpAvg));
            tensors.Add(($"{name}.exp_avg_sq", s.ExpAvgSq));
            steps[name] = s.Step;
        }
        steps["__optimizer_steps__"] = Steps;
        return (tensors, steps);
    }

    /// <summary>Restores state saved by <see cref="ExportState"/>.</summary>
    public void ImportState(IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, long> stepCounts)
    {
        foreach (var s in _state.Values) { s.ExpAvg.Dispose(); s.ExpAvgSq.Dispose(); }
        _state.Clear();
        var byName = _params.ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
        foreach (var (name, step) in stepCounts)
        {
            if (name == "__optimizer_steps__") { Steps = step; continue; }
            if (!byName.TryGetValue(name, out var p)) throw new BupoException($"checkpoint: optimizer state for unknown parameter '{name}'");
            if (!tensors.TryGetValue($"{name}.exp_avg", out var m) || !tensors.TryGetValue($"{name}.exp_avg_sq", out var v))
                throw new BupoException($"checkpoint: optimizer state of '{name}' is incomplete");
            _state[name] = new State
            {
                ExpAvg = m.to(p.dtype, p.device).DetachFromDisposeScope(),
                ExpAvgSq = v.to(p.dtype, p.device).DetachFromDisposeScope(),
                Step = step,
            };
        }
    }

    public void Dispose()
    {
        foreach (var s in _state.Values) { s.ExpAvg.Dispose(); s.ExpAvgSq.Dispose(); }
        _state.Clear();
    }
}
