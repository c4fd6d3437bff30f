namespace BuPO.Hybrid.RL.Training;

/// <summary>SplitMix64-style seed derivation: independent streams from (seed, a, b, ...).</summary>
public static class SeedMix
{
    public static ulong Mix(ulong seed, params ulong[] parts)
    {
        var x = seed;
        foreach (var p in parts) x = Step(x ^ Step(p + 0x9E3779B97F4A7C15UL));
        return Step(x);
    }

    private static ulong Step(ulong z)
    {
        z += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
