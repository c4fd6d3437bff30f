using System.Diagnostics;
using BuPO.Hybrid.Model;
using BuPO.Hybrid.RL.Algorithms;
using TorchSharp;
using static TorchSharp.torch;
using AdamW = BuPO.Hybrid.RL.Algorithms.AdamW;
using TF = TorchSharp.torch.nn.functional;

namespace BuPO.Hybrid.Bench.Training;

/// <summary>
/// One mode's step, as GrpoTrainer takes it: the trainer's own <see cref="AdamW"/> over every parameter (those without a
/// gradient, the blocks above k in the layer-k steps, are skipped as in PyTorch), the global grad norm clipped to 1.0.
/// </summary>
internal sealed class TrainStepRunner : IDisposable
{
    private readonly TransformerModel _model;
    private readonly int _k, _chunk;
    private readonly bool _checkpointing;
    private readonly Tensor _tokens, _targets, _advantages, _mask;
    private readonly AdamW? _optimizer;
    private readonly torch.optim.Optimizer? _torchOptimizer;
    private readonly List<TorchSharp.Modules.Parameter> _params;
    private readonly double _lr;

    public TrainStepMode Mode { get; }
    /// <summary>Parameters that got a gradient (and an update) in the last step.</summary>
    public long TrainedParameters { get; private set; }
    public double LastLoss { get; private set; } = double.NaN;

    public TrainStepRunner(TransformerModel model, TrainStepMode mode, int k, int chunk, double lr, bool checkpointing, bool torchOptimizer,
        Tensor tokens, Tensor targets, Tensor advantages, Tensor mask)
    {
        _model = model; Mode = mode; _k = k; _chunk = chunk; _checkpointing = checkpointing;
        _tokens = tokens; _targets = targets; _advantages = advantages; _mask = mask; _lr = lr;
        _params = model.GgufParameters.Select(p => p.Value).ToList();
        if (torchOptimizer)
            // Measured for comparison only (--optimizer torch): its step makes temporary Scalars (BUPO002), which the
            // trainer never uses for that reason.
#pragma warning disable BUPO002
            _torchOptimizer = torch.optim.AdamW(mode == TrainStepMode.Full ? _params : model.ParametersUpToBlock(k).Distinct(ReferenceEqualityComparer.Instance).Cast<TorchSharp.Modules.Parameter>().ToList(), lr,
                beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01);
#pragma warning restore BUPO002
        else _optimizer = new AdamW(model.GgufParameters, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01);
    }

    /// <summary>One step; returns its wall time in ms (the device synchronized at the end).</summary>
    public double Step()
    {
        var device = _model.Device;
        BenchMachine.Synchronize(device);
        var sw = Stopwatch.StartNew();
        if (_optimizer != null) _optimizer.ZeroGrad();
        else _model.zero_grad(set_to_none: true);
        using (var scope = NewDisposeScope())
        {
            Tensor logProbs;
            ForwardResult fwd;
            switch (Mode)
            {
                case TrainStepMode.Full:
                    fwd = _model.Forward(_tokens, null, null, new ForwardOptions { ComputeLogits = false, GradientCheckpointing = _checkpointing });
                    logProbs = InternalPolicyHead.FullPolicy(_model, 1.0, _chunk).LogProbs(fwd.LastHidden, _targets);
                    break;
                case TrainStepMode.Reference:
                    // The reference: the whole model with output_hidden_states, the final logits made (and kept) by the forward,
                    // then a second [tokens x vocab] logits tensor from block k's hidden state, log-softmaxed whole.
                    fwd = _model.Forward(_tokens, null, null, new ForwardOptions
                    {
                        ComputeLogits = true, Residuals = ForwardOptions.AllBlocks(_model.Config.LayerCount),
                    });
                    var hk = fwd.Residuals[_k];
                    var u = hk.dtype == _model.Unembedding.dtype ? _model.Unembedding : _model.Unembedding.to_type(hk.dtype); // bf16 copy under mixed precision
                    var lens = TF.linear(hk, u).to_type(ScalarType.Float32);
                    logProbs = lens.log_softmax(-1).gather(-1, _targets.unsqueeze(-1)).squeeze(-1);
                    break;
                default:
                    fwd = _model.Forward(_tokens, null, null, new ForwardOptions { StopAfterBlock = _k, ComputeLogits = false, GradientCheckpointing = _checkpointing });
                    logProbs = new InternalPolicyHead(_model, LensNorm.Identity, 1.0, _chunk).LogProbs(fwd.LastHidden, _targets);
                    break;
            }
            // On-policy step: π_old = π (detached), as the first update after a rollout; GRPO's clipped loss, token-mean.
            var loss = PolicyLoss.Compute(logProbs, logProbs.detach(), _advantages, _mask, new PpoClipOptions()).Loss;
            loss.backward();
            if (_optimizer != null)
            {
                var norm = _optimizer.GradNorm();
                if (double.IsFinite(norm))
                {
                    _optimizer.ClipGrads(norm, 1.0);
                    _optimizer.Step(_lr);
                }
            }
            else
            {
                nn.utils.clip_grad_norm_(_params.Where(p => p.grad is not null), 1.0);
                _torchOptimizer!.step();
            }
            TrainedParameters = _model.GgufParameters.Sum(p => p.Value.grad is { } g ? g.numel() : 0);
            LastLoss = loss.detach().to_type(ScalarType.Float64).item<double>();
            fwd.Dispose();
        }
        BenchMachine.Synchronize(device);
        var ms = sw.Elapsed.TotalMilliseconds;
        // Untimed: tensor handles TorchSharp made outside any dispose scope (gradients read by the optimizer) hold their
        // storage until finalized; without a collection here the big shapes grew by a gradient's size per step.
        GC.Collect();
        GC.WaitForPendingFinalizers();
        return ms;
    }

    public void Dispose()
    {
        _optimizer?.Dispose();
        _torchOptimizer?.Dispose();
    }
}
