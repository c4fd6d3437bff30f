namespace BuPO.Hybrid.Gguf.Tests;

/// <summary>
/// Straightforward scalar ports of ggml's reference code (ggml-impl.h, ggml-quants.c), written from the C
/// sources and the block structs in ggml-common.h, independent of the product's vectorized code.
/// Operation order follows the C source exactly (left-to-right float products, no FMA).
/// </summary>
internal static class GgmlReference
{
    private static uint Bits(float f) => BitConverter.SingleToUInt32Bits(f);
    private static float FromBits(uint u) => BitConverter.UInt32BitsToSingle(u);
    private static ushort U16(byte[] b, int o) => (ushort)(b[o] | b[o + 1] << 8);

    /// <summary>ggml_compute_fp16_to_fp32.</summary>
    public static float Fp16ToFp32(ushort h)
    {
        var w = (uint)h << 16;
        var sign = w & 0x80000000u;
        var twoW = w + w;
        const uint expOffset = 0xE0u << 23;
        var expScale = FromBits(0x7800000u);
        var normalized = FromBits((twoW >> 4) + expOffset) * expScale;
        const uint magicMask = 126u << 23;
        const float magicBias = 0.5f;
        var denormalized = FromBits((twoW >> 17) | magicMask) - magicBias;
        const uint denormalizedCutoff = 1u << 27;
        var result = sign | (twoW < denormalizedCutoff ? Bits(denormalized) : Bits(normalized));
        return FromBits(result);
    }

    /// <summary>ggml_compute_fp32_to_fp16.</summary>
    public static ushort Fp32ToFp16(float f)
    {
        var scaleToInf = FromBits(0x77800000u);
        var scaleToZero = FromBits(0x08800000u);
        var @base = (MathF.Abs(f) * scaleToInf) * scaleToZero;
        var w = Bits(f);
        var shl1W = w + w;
        var sign = w & 0x80000000u;
        var bias = shl1W & 0xFF000000u;
        if (bias < 0x71000000u) bias = 0x71000000u;
        @base = FromBits((bias >> 1) + 0x07800000u) + @base;
        var bits = Bits(@base);
        var expBits = (bits >> 13) & 0x00007C00u;
        var mantissaBits = bits & 0x00000FFFu;
        var nonsign = expBits + mantissaBits;
        return (ushort)((sign >> 16) | (shl1W > 0xFF000000u ? 0x7E00u : nonsign));
    }

    /// <summary>ggml_compute_fp32_to_bf16.</summary>
    public static ushort Fp32ToBf16(float s)
    {
        var i = Bits(s);
        if ((i & 0x7fffffff) > 0x7f800000) return (ushort)((i >> 16) | 64);
        return (ushort)((i + (0x7fff + ((i >> 16) & 1))) >> 16);
    }

    /// <summary>C roundf: nearest integer, halfway cases away from zero.</summary>
    public static float RoundF(float x)
    {
        if (!float.IsFinite(x)) return x;
        var t = MathF.Truncate(x);
        var frac = x - t; // exact
        if (frac >= 0.5f) return t + 1;
        if (frac <= -0.5f) return t - 1;
        return t;
    }

    /// <summary>quantize_row_q8_0_ref.</summary>
    public static byte[] QuantizeQ8_0(float[] x)
    {
        var nb = x.Length / 32;
        var y = new byte[nb * 34];
        for (var i = 0; i < nb; i++)
        {
            var amax = 0.0f;
            for (var j = 0; j < 32; j++)
            {
                var v = x[i * 32 + j];
                var a = MathF.Abs(v);
                amax = amax > a ? amax : a; // MAX(amax, fabsf(v))
            }
            var d = amax / ((1 << 7) - 1);
            var id = d != 0 ? 1.0f / d : 0.0f;
            var h = Fp32ToFp16(d);
            y[i * 34] = (byte)h; y[i * 34 + 1] = (byte)(h >> 8);
            for (var j = 0; j < 32; ++j)
            {
                var x0 = x[i * 32 + j] * id;
                y[i * 34 + 2 + j] = (byte)(sbyte)RoundF(x0);
            }
        }
        return y;
    }

    /// <summary>dequantize_row_* of one type, or null when the reference does not cover it.</summary>
    public static float[] Dequantize(GgmlType type, byte[] x, int k) => type switch
    {
        GgmlType.Q4_0 => Q4_0(x, k),
        GgmlType.Q4_1 => Q4_1(x, k),
        GgmlType.Q5_0 => Q5_0(x, k),
        GgmlType.Q5_1 => Q5_1(x, k),
        GgmlType.Q8_0 => Q8_0(x, k),
        GgmlType.Q2_K => Q2_K(x, k),
        GgmlType.Q3_K => Q3_K(x, k),
        GgmlType.Q4_K => Q4_K(x, k),
        GgmlType.Q5_K => Q5_K(x, k),
        GgmlType.Q6_K => Q6_K(x, k),
        GgmlType.F16 => Enumerable.Range(0, k).Select(i => Fp16ToFp32(U16(x, 2 * i))).ToArray(),
        GgmlType.BF16 => Enumerable.Range(0, k).Select(i => FromBits((uint)U16(x, 2 * i) << 16)).ToArray(),
        _ => throw new NotSupportedException(type.ToString()),
    };

    // block_q4_0: { ggml_half d; uint8_t qs[16]; } = 18 bytes
    private static float[] Q4_0(byte[] x, int k)
    {
        const int qk = 32; var y = new float[k];
        for (var i = 0; i < k / qk; i++)
        {
            var bo = i * 18;
            var d = Fp16ToFp32(U16(x, bo));
            for (var j = 0; j < qk / 2; ++j)
            {
                var x0 = (x[bo + 2 + j] & 0x0F) - 8;
                var x1 = (x[bo + 2 + j] >> 4) - 8;
                y[i * qk + j + 0] = x0 * d;
                y[i * qk + j + qk / 2] = x1 * d;
            }
        }
        return y;
    }

    // block_q4_1: { ggml_half d; ggml_half m; uint8_t qs[16]; } = 20 bytes
    private static float[] Q4_1(byte[] x, int k)
    {
        const int qk = 32; var y = new float[k];
        for (var i = 0; i < k / qk; i++)
        {
            var bo = i * 20;
            var d = Fp16ToFp32(U16(x, bo));
            var m = Fp16ToFp32(U16(x, bo + 2));
            for (var j = 0; j < qk / 2; ++j)
            {
                var x0 = x[bo + 4 + j] & 0x0F;
                var x1 = x[bo + 4 + j] >> 4;
                float p0 = x0 * d, p1 = x1 * d;
                y[i * qk + j + 0] = p0 + m;
                y[i * qk + j + qk / 2] = p1 + m;
            }
        }
        return y;
    }

    // block_q5_0: { ggml_half d; uint8_t qh[4]; uint8_t qs[16]; } = 22 bytes
    private static float[] Q5_0(byte[] x, int k)
    {
        const int qk = 32; var y = new float[k];
        for (var i = 0; i < k / qk; i++)
        {
            var bo = i * 22;
            var d = Fp16ToFp32(U16(x, bo));
            var qh = BitConverter.ToUInt32(x, bo + 2);
            for (var j = 0; j < qk / 2; ++j)
            {
                var xh0 = (byte)(((qh >> (j + 0)) << 4) & 0x10);
                var xh1 = (byte)((qh >> (j + 12)) & 0x10);
                var x0 = ((x[bo + 6 + j] & 0x0F) | xh0) - 16;
                var x1 = ((x[bo + 6 + j] >> 4) | xh1) - 16;
                y[i * qk + j + 0] = x0 * d;
                y[i * qk + j + qk / 2] = x1 * d;
            }
        }
        return y;
    }

    // block_q5_1: { ggml_half d; ggml_half m; uint8_t qh[4]; uint8_t qs[16]; } = 24 bytes
    private static float[] Q5_1(byte[] x, int k)
    {
        const int qk = 32; var y = new float[k];
        for (var i = 0; i < k / qk; i++)
        {
            var bo = i * 24;
            var d = Fp16ToFp32(U16(x, bo));
            var m = Fp16ToFp32(U16(x, bo + 2));
            var qh = BitConverter.ToUInt32(x, bo + 4);
            for (var j = 0; j < qk / 2; ++j)
            {
                var xh0 = (byte)(((qh >> (j + 0)) << 4) & 0x10);
                var xh1 = (byte)((qh >> (j + 12)) & 0x10);
                var x0 = (x[bo + 8 + j] & 0x0F) | xh0;
                var x1 = (x[bo + 8 + j] >> 4) | xh1;
                float p0 = x0 * d, p1 = x1 * d;
                y[i * qk + j + 0] = p0 + m;
                y[i * qk + j + qk / 2] = p1 + m;
            }
        }
        return y;
    }

    // block_q8_0: { ggml_half d; int8_t qs[32]; } = 34 bytes
    private static float[] Q8_0(byte[] x, int k)
    {
        const int qk = 32; var y = new float[k];
        for (var i = 0; i < k / qk; i++)
        {
            var d = Fp16ToFp32(U16(x, i * 34));
            for (var j = 0; j < qk; ++j) y[i * qk + j] = (sbyte)x[i * 34 + 2 + j] * d;
        }
        return y;
    }

    // block_q2_K: { uint8_t scales[16]; uint8_t qs[64]; ggml_half d; ggml_half dmin; } = 84 bytes
    private static float[] Q2_K(byte[] x, int k)
    {
        var y = new float[k]; var yi = 0;
        for (var i = 0; i < k / 256; i++)
        {
            var bo = i * 84;
            var d = Fp16ToFp32(U16(x, bo + 80));
            var min = Fp16ToFp32(U16(x, bo + 82));
            var q = bo + 16;
            var isc = 0;
            for (var n = 0; n < 256; n += 128)
            {
                var shift = 0;
                for (var j = 0; j < 4; ++j)
                {
                    var sc = x[bo + isc++];
                    float dl = d * (sc & 0xF), ml = min * (sc >> 4);
                    for (var l = 0; l < 16; ++l) { var p = dl * (sbyte)((x[q + l] >> shift) & 3); y[yi++] = p - ml; }
                    sc = x[bo + isc++];
                    dl = d * (sc & 0xF); ml = min * (sc >> 4);
                    for (var l = 0; l < 16; ++l) { var p = dl * (sbyte)((x[q + l + 16] >> shift) & 3); y[yi++] = p - ml; }
                    shift += 2;
                }
                q += 32;
            }
        }
        return y;
    }

    // block_q3_K: { uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; ggml_half d; } = 110 bytes
    private static float[] Q3_K(byte[] x, int k)
    {
        const uint kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
        var y = new float[k]; var yi = 0;
        var aux = new uint[4];
        for (var i = 0; i < k / 256; i++)
        {
            var bo = i * 110;
            var dAll = Fp16ToFp32(U16(x, bo + 108));
            var q = bo + 32;
            var hm = bo;
            byte m = 1;
            aux[0] = BitConverter.ToUInt32(x, bo + 96);
            aux[1] = BitConverter.ToUInt32(x, bo + 100);
            aux[2] = BitConverter.ToUInt32(x, bo + 104);
            var tmp = aux[2];
            aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
            aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
            aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
            aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
            sbyte Scale(int idx) => (sbyte)(aux[idx / 4] >> (8 * (idx % 4)));
            var isc = 0;
            for (var n = 0; n < 256; n += 128)
            {
                var shift = 0;
                for (var j = 0; j < 4; ++j)
                {
                    var dl = dAll * (Scale(isc++) - 32);
                    for (var l = 0; l < 16; ++l)
                        y[yi++] = dl * ((sbyte)((x[q + l] >> shift) & 3) - ((x[hm + l] & m) != 0 ? 0 : 4));
                    dl = dAll * (Scale(isc++) - 32);
                    for (var l = 0; l < 16; ++l)
                        y[yi++] = dl * ((sbyte)((x[q + l + 16] >> shift) & 3) - ((x[hm + l + 16] & m) != 0 ? 0 : 4));
                    shift += 2;
                    m <<= 1;
                }
                q += 32;
            }
        }
        return y;
    }

    private static void GetScaleMinK4(int j, byte[] x, int q, out byte d, out byte m)
    {
        if (j < 4) { d = (byte)(x[q + j] & 63); m = (byte)(x[q + j + 4] & 63); }
        else
        {
            d = (byte)((x[q + j + 4] & 0xF) | ((x[q + j - 4] >> 6) << 4));
            m = (byte)((x[q + j + 4] >> 4) | ((x[q + j - 0] >> 6) << 4));
        }
    }

    // block_q4_K: { ggml_half d; ggml_half dmin; uint8_t scales[12]; uint8_t qs[128]; } = 144 bytes
    private static float[] Q4_K(byte[] x, int k)
    {
        var y = new float[k]; var yi = 0;
        for (var i = 0; i < k / 256; i++)
        {
            var bo = i * 144;
            var q = bo + 16;
            var d = Fp16ToFp32(U16(x, bo));
            var min = Fp16ToFp32(U16(x, bo + 2));
            var isc = 0;
            for (var j = 0; j < 256; j += 64)
            {
                GetScaleMinK4(isc + 0, x, bo + 4, out var sc, out var m);
                float d1 = d * sc, m1 = min * m;
                GetScaleMinK4(isc + 1, x, bo + 4, out sc, out m);
                float d2 = d * sc, m2 = min * m;
                for (var l = 0; l < 32; ++l) { var p = d1 * (x[q + l] & 0xF); y[yi++] = p - m1; }
                for (var l = 0; l < 32; ++l) { var p = d2 * (x[q + l] >> 4); y[yi++] = p - m2; }
                q += 32; isc += 2;
            }
        }
        return y;
    }

    // block_q5_K: { ggml_half d; ggml_half dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; } = 176 bytes
    private static float[] Q5_K(byte[] x, int k)
    {
        var y = new float[k]; var yi = 0;
        for (var i = 0; i < k / 256; i++)
        {
            var bo = i * 176;
            var ql = bo + 48;
            var qh = bo + 16;
            var d = Fp16ToFp32(U16(x, bo));
            var min = Fp16ToFp32(U16(x, bo + 2));
            var isc = 0;
            byte u1 = 1, u2 = 2;
            for (var j = 0; j < 256; j += 64)
            {
                GetScaleMinK4(isc + 0, x, bo + 4, out var sc, out var m);
                float d1 = d * sc, m1 = min * m;
                GetScaleMinK4(isc + 1, x, bo + 4, out sc, out m);
                float d2 = d * sc, m2 = min * m;
                for (var l = 0; l < 32; ++l) { var p = d1 * ((x[ql + l] & 0xF) + ((x[qh + l] & u1) != 0 ? 16 : 0)); y[yi++] = p - m1; }
                for (var l = 0; l < 32; ++l) { var p = d2 * ((x[ql + l] >> 4) + ((x[qh + l] & u2) != 0 ? 16 : 0)); y[yi++] = p - m2; }
                ql += 32; isc += 2;
                u1 <<= 2; u2 <<= 2;
            }
        }
        return y;
    }

    // block_q6_K: { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; ggml_half d; } = 210 bytes
    private static float[] Q6_K(byte[] x, int k)
    {
        var y = new float[k];
        for (var i = 0; i < k / 256; i++)
        {
            var bo = i * 210;
            var d = Fp16ToFp32(U16(x, bo + 208));
            int ql = bo, qh = bo + 128, sc = bo + 192, yo = i * 256;
            for (var n = 0; n < 256; n += 128)
            {
                for (var l = 0; l < 32; ++l)
                {
                    var isc = l / 16;
                    var q1 = (sbyte)((x[ql + l + 0] & 0xF) | (((x[qh + l] >> 0) & 3) << 4)) - 32;
                    var q2 = (sbyte)((x[ql + l + 32] & 0xF) | (((x[qh + l] >> 2) & 3) << 4)) - 32;
                    var q3 = (sbyte)((x[ql + l + 0] >> 4) | (((x[qh + l] >> 4) & 3) << 4)) - 32;
                    var q4 = (sbyte)((x[ql + l + 32] >> 4) | (((x[qh + l] >> 6) & 3) << 4)) - 32;
                    y[yo + l + 0] = d * (sbyte)x[sc + isc + 0] * q1;
                    y[yo + l + 32] = d * (sbyte)x[sc + isc + 2] * q2;
                    y[yo + l + 64] = d * (sbyte)x[sc + isc + 4] * q3;
                    y[yo + l + 96] = d * (sbyte)x[sc + isc + 6] * q4;
                }
                yo += 128; ql += 64; qh += 32; sc += 8;
            }
        }
        return y;
    }
}
