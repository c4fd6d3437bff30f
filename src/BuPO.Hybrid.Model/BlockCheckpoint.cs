using TorchSharp;
using static TorchSharp.torch;

namespace BuPO.Hybrid.Model;

/// <summary>
/// Per-block gradient checkpointing (TorchSharp 0.107 has no torch.utils.checkpoint): a custom autograd function runs
/// the block without keeping activations and, in backward, recomputes it with grad enabled and back-propagates through
/// the recomputation (PyTorch's reentrant checkpoint). Parameter gradients are accumulated into <c>.grad</c> by that
/// inner backward; the function itself returns only the gradient of the block input.
/// </summary>
internal sealed class BlockCheckpoint : autograd.SingleTensorFunction<BlockCheckpoint>
{
    public override string Name => "BuPOBlockCheckpoint";

    private sealed record State(TransformerModel Model, int Block, AttentionContext Attention);

    public static Tensor Run(TransformerModel model, int block, Tensor hidden, AttentionContext attention)
        => apply(hidden, new State(model, block, attention.Detached()));

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var hidden = (Tensor)vars[0];
        var state = (State)vars[1];
        ctx.save_for_backward([hidden]);
        ctx.save_data("state", state);
        return state.Model.RunBlock(state.Block, hidden, state.Attention, null, null);
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
    {
        var state = (State)ctx.get_data("state");
        var saved = ctx.get_saved_variables()[0];
        Tensor gradInput;
        using (NewDisposeScope())
        {
            var h = saved.detach().requires_grad_(true);
            using (enable_grad())
            {
                var outp = state.Model.RunBlock(state.Block, h, state.Attention, null, null);
                autograd.backward([outp], [gradOutput]);
            }
            gradInput = h.grad!.clone().MoveToOuterDisposeScope();
        }
        return [gradInput, null!];
    }
}
