namespace BuPO.Hybrid.Analysis.Tests;

public class EntropyAccumulatorTests
{
    [Fact]
    public void MeansAreTokenWeightedAndDeltasFollowTheSpec()
    {
        var acc = new EntropyAccumulator(2, keepPerToken: true);
        // Sequence 1: 1 position; sequence 2: 3 positions. Token-weighted mean of layer 0 = (1 + 2+3+4) / 4 = 2.5.
        acc.BeginSequence(1);
        acc.AddEmbedding([5f]); acc.AddFinal([0.5f]);
        acc.Add(LensSite.Layer, 0, [1f]); acc.Add(LensSite.Layer, 1, [0f]);
        acc.Add(LensSite.Attention, 0, [3f]); acc.Add(LensSite.AttentionInput, 0, [1f]);
        acc.Add(LensSite.Ffn, 0, [2f]); acc.Add(LensSite.FfnInput, 0, [4f]);
        acc.BeginSequence(3);
        acc.AddEmbedding([5f, 5f, 5f]); acc.AddFinal([0.5f, 0.5f, 0.5f]);
        acc.Add(LensSite.Layer, 0, [2f, 3f, 4f]); acc.Add(LensSite.Layer, 1, [1f, 1f, 1f]);
        acc.Add(LensSite.Attention, 0, [3f, 3f, 3f]); acc.Add(LensSite.AttentionInput, 0, [1f, 1f, 1f]);
        acc.Add(LensSite.Ffn, 0, [2f, 2f, 2f]); acc.Add(LensSite.FfnInput, 0, [4f, 4f, 4f]);

        var layers = acc.Layers();
        Assert.Equal(2.5, layers[0].Entropy, 12);
        Assert.Equal(Math.Sqrt((2.25 + 0.25 + 0.25 + 2.25) / 3), layers[0].EntropyStd, 12);
        Assert.Equal(2.5 - 5, layers[0].DeltaLayer, 12);
        Assert.Equal(0.75 - 2.5, layers[1].DeltaLayer, 12);
        Assert.Equal(3 - 1, layers[0].DeltaAttention, 12);
        Assert.Equal(2 - 4, layers[0].DeltaFfn, 12);
        Assert.Equal(0.5, acc.FinalEntropy, 12);
        Assert.Equal(4, acc.PositionCount);
        Assert.Equal(3f, acc.PerToken![1][1][0]);
    }

    [Fact]
    public void WrongPositionCountThrows()
    {
        var acc = new EntropyAccumulator(1);
        acc.BeginSequence(2);
        Assert.Throws<ArgumentException>(() => acc.Add(LensSite.Layer, 0, [1f]));
    }
}
