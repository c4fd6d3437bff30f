namespace BuPO.Hybrid.Bench.Training;

/// <summary>The trainer step variants <see cref="TrainBenchmark"/> times, in table order.</summary>
public enum TrainStepMode
{
    /// <summary>The full policy (a GRPO step).</summary>
    Full,
    /// <summary>A BuPO layer-k step the reference's way: the whole model, all hidden states, block k's [tokens x vocab] lens logits.</summary>
    Reference,
    /// <summary>A BuPO layer-k step our way: blocks 0..k only, chunked lens log-probs.</summary>
    Bupo,
}
