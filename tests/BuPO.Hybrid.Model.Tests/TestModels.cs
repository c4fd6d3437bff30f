using BuPO.Hybrid.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace BuPO.Hybrid.Model.Tests;

/// <summary>Shared helpers: torch threads, model loading, comparisons.</summary>
internal static class TestModels
{
    static TestModels()
    {
        TorchRuntime.EnsureInitialized();
        torch.set_num_threads(Math.Max(1, Math.Min(2, Environment.ProcessorCount)));
    }

    public static TransformerModel Stories(ScalarType dtype = ScalarType.Float32)
        => TransformerModel.FromGguf(SharedAssets.RequireFile(SharedAssets.StoriesModel), CPU, dtype);

    /// <summary>Deterministic pseudo-random token sequences of the given lengths (ids in [1, vocab)).</summary>
    public static int[][] Sequences(int vocab, int seed, params int[] lengths)
    {
        var rng = new Random(seed);
        return lengths.Select(n => Enumerable.Range(0, n).Select(_ => rng.Next(1, vocab)).ToArray()).ToArray();
    }

    public static double MaxAbsDiff(Tensor a, Tensor b)
    {
        using var d = (a.to_type(ScalarType.Float64) - b.to_type(ScalarType.Float64)).abs().max();
        return d.item<double>();
    }

    public static float[] Floats(Tensor t) => t.to_type(ScalarType.Float32).cpu().contiguous().data<float>().ToArray();
}
