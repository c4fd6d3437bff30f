namespace BuPO.Hybrid.Gguf.Tests;

public class QuantizationTests
{
    public static TheoryData<GgmlType> QuantTypes => new()
    {
        GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.Q8_0,
        GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K,
    };

    // Offsets of the fp16 fields in each block (d, m/dmin); everything else is random bytes.
    private static int[] HalfFields(GgmlType t) => t switch
    {
        GgmlType.Q4_0 or GgmlType.Q5_0 or GgmlType.Q8_0 => [0],
        GgmlType.Q4_1 or GgmlType.Q5_1 or GgmlType.Q4_K or GgmlType.Q5_K => [0, 2],
        GgmlType.Q2_K => [80, 82],
        GgmlType.Q3_K => [108],
        GgmlType.Q6_K => [208],
        _ => [],
    };

    private static readonly ushort[] SpecialHalves = [0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x3C00, 0xBC00, 0x7BFF, 0xFBFF, 0x1400, 0x9400];

    /// <summary>Random blocks: every byte random, fp16 scales random finite values (negative, zero, subnormal included).</summary>
    private static byte[] RandomBlocks(GgmlType type, int blocks, int seed)
    {
        var rng = new Random(seed);
        var size = GgmlTypeInfo.BlockBytes(type);
        var data = new byte[blocks * size];
        rng.NextBytes(data);
        for (var b = 0; b < blocks; b++)
            foreach (var off in HalfFields(type))
            {
                ushort h;
                if (b < SpecialHalves.Length) h = SpecialHalves[(b + off) % SpecialHalves.Length];
                else do h = (ushort)rng.Next(0x10000); while ((h & 0x7C00) == 0x7C00); // no inf/NaN
                data[b * size + off] = (byte)h;
                data[b * size + off + 1] = (byte)(h >> 8);
            }
        return data;
    }

    private static void AssertBitsEqual(float[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (var i = 0; i < expected.Length; i++)
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
                Assert.Fail($"{what}: element {i}: expected {expected[i]:R} (0x{BitConverter.SingleToInt32Bits(expected[i]):X8}), got {actual[i]:R} (0x{BitConverter.SingleToInt32Bits(actual[i]):X8})");
    }

    [Theory]
    [MemberData(nameof(QuantTypes))]
    public void DequantizeMatchesGgmlReference(GgmlType type)
    {
        Assert.True(GgmlDequantizer.Supports(type));
        for (var seed = 1; seed <= 4; seed++)
        {
            const int blocks = 97;
            var data = RandomBlocks(type, blocks, seed * 7919 + (int)type);
            var k = blocks * GgmlTypeInfo.BlockSize(type);
            var expected = GgmlReference.Dequantize(type, data, k);
            var actual = new float[k];
            GgmlDequantizer.Dequantize(type, data, actual);
            AssertBitsEqual(expected, actual, $"{type} seed {seed}");
        }
    }

    [Fact]
    public void DequantizeF16AndBf16MatchGgmlForEveryBitPattern()
    {
        var all = new byte[65536 * 2];
        for (var i = 0; i < 65536; i++) { all[2 * i] = (byte)i; all[2 * i + 1] = (byte)(i >> 8); }
        foreach (var type in new[] { GgmlType.F16, GgmlType.BF16 })
        {
            var expected = GgmlReference.Dequantize(type, all, 65536);
            var actual = new float[65536];
            GgmlDequantizer.Dequantize(type, all, actual);
            for (var i = 0; i < 65536; i++)
            {
                if (float.IsNaN(expected[i])) { Assert.True(float.IsNaN(actual[i]), $"{type} 0x{i:X4}"); continue; }
                Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(actual[i]), $"{type} 0x{i:X4}: {expected[i]} vs {actual[i]}");
            }
        }
    }

    [Fact]
    public void DequantizeRejectsWrongSizes()
    {
        Assert.Throws<ArgumentException>(() => GgmlDequantizer.Dequantize(GgmlType.Q4_K, new byte[143], new float[256]));
        Assert.Throws<ArgumentException>(() => GgmlDequantizer.Dequantize(GgmlType.Q8_0, new byte[34], new float[16]));
        Assert.Throws<NotSupportedException>(() => GgmlDequantizer.Dequantize(GgmlType.IQ2_XXS, new byte[66], new float[256]));
    }

    /// <summary>Floats that exercise fp16/bf16 rounding: every half and the midpoints between neighbours (±1 ulp), plus a bit-pattern sweep.</summary>
    private static float[] RoundingProbeFloats()
    {
        var list = new List<float>();
        for (var h = 0; h < 0x7C00; h++)
        {
            var a = GgmlReference.Fp16ToFp32((ushort)h);
            var b = GgmlReference.Fp16ToFp32((ushort)(h + 1));
            var mid = (float)(((double)a + b) / 2);
            foreach (var s in new[] { 1f, -1f })
            {
                list.Add(s * a);
                list.Add(s * mid);
                list.Add(s * MathF.BitIncrement(mid));
                list.Add(s * MathF.BitDecrement(mid));
            }
        }
        for (var u = 0u; u < 0xFFFF0000u; u += 65521u) list.Add(BitConverter.UInt32BitsToSingle(u));
        list.AddRange([float.PositiveInfinity, float.NegativeInfinity, float.NaN, -float.NaN, BitConverter.UInt32BitsToSingle(0x7F800001), BitConverter.UInt32BitsToSingle(0xFFC12345),
            65504f, 65519.99f, 65520f, 1e6f, -1e6f, float.Epsilon, -float.Epsilon, 0f, -0f]);
        while (list.Count % 32 != 0) list.Add(0.1f);
        return list.ToArray();
    }

    [Fact]
    public void F16EncodingMatchesGgml()
    {
        var x = RoundingProbeFloats();
        var dst = new byte[x.Length * 2];
        GgmlQuantizer.Quantize(GgmlType.F16, x, dst);
        for (var i = 0; i < x.Length; i++)
        {
            var expected = GgmlReference.Fp32ToFp16(x[i]);
            var actual = (ushort)(dst[2 * i] | dst[2 * i + 1] << 8);
            Assert.True(expected == actual, $"fp16({x[i]:R} 0x{BitConverter.SingleToUInt32Bits(x[i]):X8}): expected 0x{expected:X4}, got 0x{actual:X4}");
            Assert.Equal(expected, GgmlQuantizer.FloatToF16(x[i]));
        }
    }

    [Fact]
    public void Bf16EncodingMatchesGgml()
    {
        var x = RoundingProbeFloats();
        // bf16 rounding boundaries: floats with the low 16 bits at and around 0x8000
        var extra = new List<float>(x);
        var rng = new Random(5);
        for (var i = 0; i < 20000; i++)
        {
            var hi = (uint)rng.Next(0x10000) << 16;
            foreach (var lo in new uint[] { 0x7FFF, 0x8000, 0x8001, 0, 0xFFFF }) extra.Add(BitConverter.UInt32BitsToSingle(hi | lo));
        }
        while (extra.Count % 32 != 0) extra.Add(0);
        x = extra.ToArray();
        var dst = new byte[x.Length * 2];
        GgmlQuantizer.Quantize(GgmlType.BF16, x, dst);
        for (var i = 0; i < x.Length; i++)
        {
            var expected = GgmlReference.Fp32ToBf16(x[i]);
            var actual = (ushort)(dst[2 * i] | dst[2 * i + 1] << 8);
            Assert.True(expected == actual, $"bf16(0x{BitConverter.SingleToUInt32Bits(x[i]):X8}): expected 0x{expected:X4}, got 0x{actual:X4}");
        }
    }

    [Fact]
    public void Q8_0EncodingMatchesGgmlReference()
    {
        var rng = new Random(11);
        var blocks = new List<float>();
        // random blocks over many magnitudes
        for (var b = 0; b < 2000; b++)
        {
            var scale = MathF.Pow(10, rng.Next(-8, 6));
            for (var j = 0; j < 32; j++) blocks.Add((float)(rng.NextDouble() * 2 - 1) * scale);
        }
        // exact ties: amax 127 gives d = 1, id = 1, so k + 0.5 must round away from zero
        for (var b = 0; b < 50; b++)
        {
            blocks.Add(b % 2 == 0 ? 127f : -127f);
            for (var j = 1; j < 32; j++) blocks.Add(rng.Next(-126, 126) + 0.5f);
        }
        // all-zero block, block with signed zeros, block with a tiny subnormal amax, a block of halves
        blocks.AddRange(new float[32]);
        for (var j = 0; j < 32; j++) blocks.Add(j % 2 == 0 ? -0f : 0f);
        for (var j = 0; j < 32; j++) blocks.Add(j * float.Epsilon);
        for (var j = 0; j < 32; j++) blocks.Add(j * 0.5f - 8f);
        var x = blocks.ToArray();
        var expected = GgmlReference.QuantizeQ8_0(x);
        var actual = new byte[expected.Length];
        GgmlQuantizer.Quantize(GgmlType.Q8_0, x, actual);
        for (var i = 0; i < expected.Length; i++)
            Assert.True(expected[i] == actual[i], $"byte {i} (block {i / 34}, offset {i % 34}): expected {expected[i]}, got {actual[i]}");
    }

    [Fact]
    public void QuantizeThenDequantizeRoundTrips()
    {
        var rng = new Random(3);
        var x = Enumerable.Range(0, 4096).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        foreach (var type in new[] { GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0 })
        {
            var bytes = new byte[GgmlTypeInfo.RowBytes(type, x.Length)];
            GgmlQuantizer.Quantize(type, x, bytes);
            var y = new float[x.Length];
            GgmlDequantizer.Dequantize(type, bytes, y);
            var tol = type switch { GgmlType.F32 => 0, GgmlType.F16 => 1e-3, GgmlType.BF16 => 8e-3, _ => 1.0 / 127 };
            for (var i = 0; i < x.Length; i++) Assert.True(Math.Abs(x[i] - y[i]) <= tol, $"{type} [{i}]: {x[i]} -> {y[i]}");
        }
    }
}
