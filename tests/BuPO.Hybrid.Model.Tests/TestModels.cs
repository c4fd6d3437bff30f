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

    /// <summary>stories260K itself (skips without ../shared): for the tests of its real numbers.</summary>
    public static TransformerModel Stories(ScalarType dtype = ScalarType.Float32)
        => TransformerModel.FromGguf(SharedAssets.RequireFile(SharedAssets.StoriesModel), CPU, dtype);

    /// <summary>A random model of stories260K's shape and vocabulary size (<see cref="TinyTrainingModels.StoriesShaped"/>): for properties of any model.</summary>
    public static TransformerModel StoriesShaped(ScalarType dtype = ScalarType.Float32)
        => TransformerModel.FromGguf(TinyTrainingModels.StoriesShaped, CPU, dtype);

    /// <summary>
    /// The GGUF of a parity test's model: "stories" is stories260K (skips without ../shared); "random" a random model of its
    /// shape with projections at 1/sqrt(d)-ish scale and noisy norms, so that every block changes the logits.
    /// </summary>
    public static string ParityModel(string name) => name == "stories"
        ? SharedAssets.RequireFile(SharedAssets.StoriesModel)
        : TinyTrainingModels.Write("stories-shape-strong", TinyTrainingModels.StoriesShape with { WeightStd = 0.125f, NormNoise = 0.2f, Seed = 3 });

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
