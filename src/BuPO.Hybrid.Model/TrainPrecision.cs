using static TorchSharp.torch;

namespace BuPO.Hybrid.Model;

/// <summary>
/// How the trainer stores and computes with its weights (<c>--dtype</c>; <see cref="ModelDevice.ParsePrecision"/> maps the
/// option's strings to it).
/// </summary>
public enum TrainPrecision
{
    /// <summary>float32 weights, activations and AdamW state (<c>float32</c>, <c>fp32</c>, <c>f32</c>).</summary>
    Float32,
    /// <summary>
    /// Mixed precision as PyTorch's bf16 autocast runs it (<c>bfloat16</c>, <c>bf16</c>): float32 master weights and AdamW
    /// state; the forward and backward use bfloat16 copies cast from the masters where each weight is used, so gradients
    /// reach the float32 masters through the cast; log-softmax, log-probs and the loss are float32.
    /// </summary>
    BFloat16Mixed,
    /// <summary>
    /// Pure bfloat16 weights and AdamW state, no float32 copy (<c>bf16-pure</c>): half the memory of the masters, but an
    /// update smaller than half a bf16 step at the weight (2^-9 to 2^-8 of its magnitude) rounds to nothing.
    /// </summary>
    BFloat16Pure,
}

/// <summary>The tensor types of a <see cref="TrainPrecision"/>.</summary>
public static class TrainPrecisionTypes
{
    /// <summary>Printed (and sent to the training observer) when a run trains in <see cref="TrainPrecision.BFloat16Pure"/>.</summary>
    public const string PureBf16Warning =
        "warning: --dtype bf16-pure keeps the weights and AdamW state in bfloat16 with no float32 master copy: an update smaller than " +
        "half of bf16's step at a weight (2^-9 to 2^-8 of its magnitude: 6e-5 for a weight of 0.02) is lost, so at small learning rates " +
        "(BuPO's 1e-6) most weights never move; use --dtype bf16 (float32 masters, bf16 compute) unless memory forbids it";

    /// <summary>The type the parameters (the masters, what the optimizer updates and checkpoints save) are stored in.</summary>
    public static ScalarType ParameterType(this TrainPrecision p) => p == TrainPrecision.BFloat16Pure ? ScalarType.BFloat16 : ScalarType.Float32;

    /// <summary>The type of the forward's activations and of the weight copies it multiplies them with.</summary>
    public static ScalarType ComputeType(this TrainPrecision p) => p == TrainPrecision.Float32 ? ScalarType.Float32 : ScalarType.BFloat16;

    /// <summary>
    /// The precision of a frozen model that computes exactly what a model in <paramref name="p"/> computes before its first
    /// update (the KL reference): under mixed precision the bf16 copies a model casts from its float32 masters are the bf16
    /// weights a pure bf16 model loads (both round the same float32 values), so the frozen copy needs no float32 masters.
    /// </summary>
    public static TrainPrecision FrozenEquivalent(this TrainPrecision p) => p == TrainPrecision.BFloat16Mixed ? TrainPrecision.BFloat16Pure : p;

    /// <summary>The short name bench output and messages use: f32, bf16 (mixed), bf16-pure.</summary>
    public static string ShortName(this TrainPrecision p) => p switch
    {
        TrainPrecision.BFloat16Mixed => "bf16",
        TrainPrecision.BFloat16Pure => "bf16-pure",
        _ => "f32",
    };
}
