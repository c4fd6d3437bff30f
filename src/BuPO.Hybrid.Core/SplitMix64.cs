using System.Runtime.CompilerServices;

namespace BuPO.Hybrid;

/// <summary>
/// SplitMix64 (Steele, Lea and Flood, 2014; the seeding generator of xoshiro): the project's one source of derived seeds
/// and cheap reproducible streams. A state advances by the golden-ratio gamma and each output is the state mixed by a
/// fixed finalizer, so every function here is pure and gives the same numbers on every platform and .NET version.
/// </summary>
public static class SplitMix64
{
    /// <summary>The increment of the state per draw (2^64 / golden ratio, odd).</summary>
    public const ulong Gamma = 0x9E3779B97F4A7C15UL;

    /// <summary>The output finalizer alone (a bijection of 64-bit words).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>The output of a generator in state <paramref name="state"/> (the state itself is not advanced).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Hash(ulong state) => Mix(state + Gamma);

    /// <summary>Advances <paramref name="state"/> by one draw and returns the draw.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Next(ref ulong state) => Mix(state += Gamma);

    /// <summary>
    /// A seed derived from <paramref name="seed"/> and a path of <paramref name="parts"/> (e.g. a purpose tag and a step):
    /// different paths give unrelated streams, the same path the same seed.
    /// </summary>
    public static ulong Derive(ulong seed, params ulong[] parts)
    {
        var x = seed;
        foreach (var p in parts) x = Hash(x ^ Hash(p + Gamma));
        return Hash(x);
    }
}
