using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace BuPO.Hybrid.Rollout;

/// <summary>xoshiro256** seeded through SplitMix64: a small, fast, version-stable random stream per rollout.</summary>
internal struct RolloutRng
{
    private ulong _s0, _s1, _s2, _s3;

    public RolloutRng(ulong seed)
    {
        ulong x = seed;
        _s0 = SplitMix64.Next(ref x);
        _s1 = SplitMix64.Next(ref x);
        _s2 = SplitMix64.Next(ref x);
        _s3 = SplitMix64.Next(ref x);
    }

    public ulong Next()
    {
        ulong result = ulong.RotateLeft(_s1 * 5, 7) * 9;
        ulong t = _s1 << 17;
        _s2 ^= _s0;
        _s3 ^= _s1;
        _s1 ^= _s2;
        _s0 ^= _s3;
        _s2 ^= t;
        _s3 = ulong.RotateLeft(_s3, 45);
        return result;
    }

    /// <summary>Uniform in [0, 1) with 53 random bits.</summary>
    public double NextDouble() => (Next() >> 11) * (1.0 / (1UL << 53));

    /// <summary>The seed of rollout (<paramref name="prompt"/>, <paramref name="sample"/>) of a request seeded <paramref name="seed"/>.</summary>
    public static ulong SequenceSeed(ulong seed, int prompt, int sample)
    {
        ulong x = seed ^ 0x6A09E667F3BCC909UL;
        ulong a = SplitMix64.Next(ref x);
        x = a ^ ((ulong)(uint)prompt * 0xD1B54A32D192ED03UL);
        ulong b = SplitMix64.Next(ref x);
        x = b ^ ((ulong)(uint)sample * 0x8CB92BA72F3D8DD7UL);
        return SplitMix64.Next(ref x);
    }
}

/// <summary>The sampling settings in the form the hot loop wants.</summary>
internal readonly struct SamplingParams
{
    public readonly bool Greedy;
    public readonly bool Untruncated;
    public readonly bool UnitTemperature;
    public readonly float InvTemperature;
    public readonly int TopK;
    public readonly float TopP;
    public readonly float MinP;

    public SamplingParams(RolloutSampling s)
    {
        Greedy = s.Temperature <= 0;
        Untruncated = s.IsUntruncated;
        UnitTemperature = s.Temperature == 1.0;
        InvTemperature = Greedy ? 0f : (float)(1.0 / s.Temperature);
        TopK = s.TopK;
        TopP = (float)s.TopP;
        MinP = (float)s.MinP;
    }
}

/// <summary>
/// Draws one token from a logits row and returns its log-probability under the model (log-softmax of the full raw
/// row, temperature 1) and under the distribution it was drawn from. Span-based and allocation-free after the first
/// call; one instance per thread (it owns scratch buffers).
/// </summary>
internal sealed class TokenSampler
{
    private const int DrawBlock = 2048;
    private float[] _exp = [];
    private float[] _exp2 = [];
    private int[] _idx = [];
    private float[] _keys = [];
    private double[] _blockSums = [];

    private void Ensure(int n)
    {
        if (_exp.Length >= n) return;
        _exp = new float[n];
        _exp2 = new float[n];
        _idx = new int[n];
        _keys = new float[n];
        _blockSums = new double[(n + DrawBlock - 1) / DrawBlock];
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public int Sample(ReadOnlySpan<float> logits, in SamplingParams p, ref RolloutRng rng, out float rawLogProb, out float samplingLogProb)
    {
        int n = logits.Length;
        Ensure(n);
        float max = TensorPrimitives.Max(logits);
        if (!float.IsFinite(max)) throw new BupoException($"the logits row holds no finite maximum ({max}): the model produced NaN or infinite logits");
        var e = _exp.AsSpan(0, n);
        TensorPrimitives.Subtract(logits, max, e);

        if (p.Greedy)
        {
            int best = TensorPrimitives.IndexOfMax(logits);
            TensorPrimitives.Exp(e, e);
            rawLogProb = logits[best] - max - (float)Math.Log(TensorPrimitives.Sum<float>(e));
            samplingLogProb = 0f;
            return best;
        }

        if (p.Untruncated)
        {
            if (p.UnitTemperature)
            {
                TensorPrimitives.Exp(e, e);
                int tok = Draw(e, ref rng, out double sum);
                rawLogProb = samplingLogProb = logits[tok] - max - (float)Math.Log(sum);
                return tok;
            }
            else
            {
                var e2 = _exp2.AsSpan(0, n);
                TensorPrimitives.Exp(e, e2);
                double rawSum = TensorPrimitives.Sum<float>(e2);
                TensorPrimitives.Multiply(e, p.InvTemperature, e);
                TensorPrimitives.Exp(e, e);
                int tok = Draw(e, ref rng, out double sumT);
                float d = logits[tok] - max;
                rawLogProb = d - (float)Math.Log(rawSum);
                samplingLogProb = d * p.InvTemperature - (float)Math.Log(sumT);
                return tok;
            }
        }

        return SampleTruncated(logits, max, p, ref rng, out rawLogProb, out samplingLogProb);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private int SampleTruncated(ReadOnlySpan<float> logits, float max, in SamplingParams p, ref RolloutRng rng, out float rawLogProb, out float samplingLogProb)
    {
        int n = logits.Length;
        var e = _exp.AsSpan(0, n);           // logits - max on entry
        TensorPrimitives.Exp(e, e);           // unnormalized probabilities at temperature 1
        double rawSum = TensorPrimitives.Sum<float>(e);
        var idx = _idx;
        var keys = _keys;
        int m;                                // candidates idx[0..m) when materialized
        bool materialized = false, sorted = false;

        if (p.TopK > 0 && p.TopK < n)
        {
            m = TopKIndices(logits, p.TopK, idx);
            SortDescending(logits, idx, keys, m);
            materialized = sorted = true;
        }
        else
        {
            m = n;
        }

        if (p.TopP < 1f)
        {
            double z;
            if (materialized)
            {
                z = 0;
                for (int j = 0; j < m; j++) z += e[idx[j]];
            }
            else
            {
                // The nucleus lies inside {logit >= max - d} as soon as that set's mass reaches TopP: collect it
                // for growing d and sort only it.
                z = rawSum;
                float d = 8f;
                while (true)
                {
                    float cut = -d;  // e-space: logits - max >= -d
                    int c = 0;
                    double mass = 0;
                    for (int i = 0; i < n; i++)
                    {
                        if (logits[i] - max >= cut)
                        {
                            idx[c++] = i;
                            mass += e[i];
                        }
                    }
                    if (mass >= p.TopP * z || d > 200f || c == n) { m = c; break; }
                    d *= 2f;
                }
                SortDescending(logits, idx, keys, m);
                materialized = sorted = true;
            }
            double target = p.TopP * z, cum = 0;
            for (int j = 0; j < m; j++)
            {
                cum += e[idx[j]];
                if (cum >= target) { m = j + 1; break; }
            }
        }

        if (p.MinP > 0f)
        {
            float minLogit = max + MathF.Log(p.MinP);
            if (materialized)
            {
                int c = 0;
                for (int j = 0; j < m; j++)
                    if (logits[idx[j]] >= minLogit) idx[c++] = idx[j]; // keeps order
                m = Math.Max(c, 1);
            }
            else
            {
                int c = 0;
                for (int i = 0; i < n; i++)
                    if (logits[i] >= minLogit) idx[c++] = i;
                m = c;
                materialized = true;
            }
        }

        if (!materialized)
        {
            // Nothing was cut (e.g. top-k >= vocabulary): the full distribution at the temperature.
            for (int i = 0; i < n; i++) idx[i] = i;
        }
        _ = sorted;

        var w = _exp2.AsSpan(0, m);
        for (int j = 0; j < m; j++) w[j] = (logits[idx[j]] - max) * p.InvTemperature;
        TensorPrimitives.Exp(w, w);
        int pick = Draw(w, ref rng, out double sumT);
        int tok = idx[pick];
        float dl = logits[tok] - max;
        rawLogProb = dl - (float)Math.Log(rawSum);
        samplingLogProb = dl * p.InvTemperature - (float)Math.Log(sumT);
        return tok;
    }

    /// <summary>Indices of the k largest logits (ties: the lower index) via a min-heap.</summary>
    private static int TopKIndices(ReadOnlySpan<float> logits, int k, int[] idx)
    {
        // heap in idx[0..k): root = smallest (logit, then larger index = "smaller")
        int count = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            if (count < k)
            {
                idx[count] = i;
                SiftUp(logits, idx, count++);
            }
            else if (logits[i] > logits[idx[0]])
            {
                idx[0] = i;
                SiftDown(logits, idx, 0, k);
            }
        }
        return count;

        static bool Less(ReadOnlySpan<float> l, int a, int b) => l[a] < l[b] || (l[a] == l[b] && a > b);
        static void SiftUp(ReadOnlySpan<float> l, int[] h, int j)
        {
            while (j > 0)
            {
                int parent = (j - 1) / 2;
                if (!Less(l, h[j], h[parent])) break;
                (h[j], h[parent]) = (h[parent], h[j]);
                j = parent;
            }
        }
        static void SiftDown(ReadOnlySpan<float> l, int[] h, int j, int size)
        {
            while (true)
            {
                int a = 2 * j + 1, b = a + 1, s = j;
                if (a < size && Less(l, h[a], h[s])) s = a;
                if (b < size && Less(l, h[b], h[s])) s = b;
                if (s == j) break;
                (h[j], h[s]) = (h[s], h[j]);
                j = s;
            }
        }
    }

    /// <summary>Sorts idx[0..m) by logit, largest first (ties: lower index first).</summary>
    private static void SortDescending(ReadOnlySpan<float> logits, int[] idx, float[] keys, int m)
    {
        for (int j = 0; j < m; j++) keys[j] = -logits[idx[j]];
        Array.Sort(keys, idx, 0, m);
        // Array.Sort is not stable: order equal keys by index so the result is a function of the logits alone.
        int start = 0;
        for (int j = 1; j <= m; j++)
        {
            if (j < m && keys[j] == keys[start]) continue;
            if (j - start > 1) Array.Sort(idx, start, j - start);
            start = j;
        }
    }

    /// <summary>
    /// Draws index i with probability w[i] / sum(w). The sum is taken per block of <see cref="DrawBlock"/> with SIMD
    /// and the target is located block by block, so only one block is scanned serially.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private int Draw(ReadOnlySpan<float> w, ref RolloutRng rng, out double total)
    {
        int n = w.Length;
        int nb = (n + DrawBlock - 1) / DrawBlock;
        var sums = _blockSums;
        if (sums.Length < nb) sums = _blockSums = new double[nb];
        double tot = 0;
        for (int b = 0; b < nb; b++)
        {
            int start = b * DrawBlock;
            double s = TensorPrimitives.Sum<float>(w.Slice(start, Math.Min(DrawBlock, n - start)));
            sums[b] = s;
            tot += s;
        }
        total = tot;
        double target = rng.NextDouble() * tot;
        double cum = 0;
        for (int b = 0; b < nb; b++)
        {
            if (cum + sums[b] > target)
            {
                int start = b * DrawBlock, end = Math.Min(start + DrawBlock, n);
                double acc = cum;
                for (int i = start; i < end; i++)
                {
                    acc += w[i];
                    if (acc > target) return i;
                }
                for (int i = end - 1; i >= start; i--)  // rounding between the SIMD and the serial sum
                    if (w[i] > 0) return i;
            }
            cum += sums[b];
        }
        for (int i = n - 1; i >= 0; i--)
            if (w[i] > 0) return i;
        return TensorPrimitives.IndexOfMax(w);
    }
}
