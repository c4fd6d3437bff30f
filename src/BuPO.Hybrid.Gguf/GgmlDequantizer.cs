using System.Buffers.Binary;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace BuPO.Hybrid.Gguf;

/// <summary>
/// Converts ggml tensor data to float32, bit-exact with ggml's <c>dequantize_row_*</c> (ggml-quants.c): every
/// product and sum is rounded in the same order as the C reference (no fused multiply-add).
/// </summary>
public static class GgmlDequantizer
{
    /// <summary>True for the types <see cref="Dequantize"/> handles.</summary>
    public static bool Supports(GgmlType type) => type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16
        or GgmlType.Q4_0 or GgmlType.Q4_1 or GgmlType.Q5_0 or GgmlType.Q5_1 or GgmlType.Q8_0
        or GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K;

    /// <summary>Dequantizes whole blocks: <paramref name="dst"/> receives one float per element.</summary>
    /// <exception cref="ArgumentException"><paramref name="src"/> is not exactly the encoded size of <paramref name="dst"/>.</exception>
    /// <exception cref="NotSupportedException">The type is not one <see cref="Supports"/> accepts.</exception>
    public static void Dequantize(GgmlType type, ReadOnlySpan<byte> src, Span<float> dst)
    {
        if (!Supports(type)) throw new NotSupportedException($"dequantizing {type} is not supported");
        var expected = GgmlTypeInfo.RowBytes(type, dst.Length);
        if (src.Length != expected) throw new ArgumentException($"{type}: {dst.Length} elements need {expected} bytes, got {src.Length}");
        switch (type)
        {
            case GgmlType.F32: MemoryMarshal.Cast<byte, float>(src).CopyTo(dst); break;
            case GgmlType.F16: TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(src), dst); break;
            case GgmlType.BF16: Bf16ToFloat(MemoryMarshal.Cast<byte, ushort>(src), dst); break;
            case GgmlType.Q4_0: Q4_0(src, dst); break;
            case GgmlType.Q4_1: Q4_1(src, dst); break;
            case GgmlType.Q5_0: Q5_0(src, dst); break;
            case GgmlType.Q5_1: Q5_1(src, dst); break;
            case GgmlType.Q8_0: Q8_0(src, dst); break;
            case GgmlType.Q2_K: Q2_K(src, dst); break;
            case GgmlType.Q3_K: Q3_K(src, dst); break;
            case GgmlType.Q4_K: Q4_K(src, dst); break;
            case GgmlType.Q5_K: Q5_K(src, dst); break;
            case GgmlType.Q6_K: Q6_K(src, dst); break;
        }
    }

    private static void Bf16ToFloat(ReadOnlySpan<ushort> src, Span<float> dst)
    {
        var bits = MemoryMarshal.Cast<float, uint>(dst);
        var i = 0;
        if (Vector128.IsHardwareAccelerated)
            for (; i + 8 <= src.Length; i += 8)
            {
                var (lo, hi) = Vector128.Widen(Vector128.Create(src.Slice(i, 8)));
                Vector128.ShiftLeft(lo, 16).CopyTo(bits.Slice(i, 4));
                Vector128.ShiftLeft(hi, 16).CopyTo(bits.Slice(i + 4, 4));
            }
        for (; i < src.Length; i++) bits[i] = (uint)src[i] << 16;
    }

    // ---- legacy 32-element blocks -------------------------------------------------------------------------

    // block_q4_0 { half d; u8 qs[16]; }: y[j] = ((qs[j] & 15) - 8) * d, y[j+16] = ((qs[j] >> 4) - 8) * d
    private static void Q4_0(ReadOnlySpan<byte> src, Span<float> dst)
    {
        var eight = Vector128.Create((byte)8);
        for (int b = 0, o = 0; o < dst.Length; b += 18, o += 32)
        {
            var d = Half(src, b);
            var qs = Vector128.Create(src.Slice(b + 2, 16));
            MulSigned16(((qs & Low4) - eight).AsSByte(), d, dst.Slice(o, 16));
            MulSigned16((Vector128.ShiftRightLogical(qs, 4) - eight).AsSByte(), d, dst.Slice(o + 16, 16));
        }
    }

    // block_q4_1 { half d, m; u8 qs[16]; }: y = q * d + m
    private static void Q4_1(ReadOnlySpan<byte> src, Span<float> dst)
    {
        for (int b = 0, o = 0; o < dst.Length; b += 20, o += 32)
        {
            float d = Half(src, b), m = Half(src, b + 2);
            var qs = Vector128.Create(src.Slice(b + 4, 16));
            MulAdd16(qs & Low4, d, m, dst.Slice(o, 16));
            MulAdd16(Vector128.ShiftRightLogical(qs, 4), d, m, dst.Slice(o + 16, 16));
        }
    }

    // block_q5_0 { half d; u8 qh[4]; u8 qs[16]; }: fifth bit of element j is bit j of qh; y = (q - 16) * d
    private static void Q5_0(ReadOnlySpan<byte> src, Span<float> dst)
    {
        var sixteen = Vector128.Create((byte)16);
        for (int b = 0, o = 0; o < dst.Length; b += 22, o += 32)
        {
            var d = Half(src, b);
            var qh = BinaryPrimitives.ReadUInt32LittleEndian(src.Slice(b + 2, 4));
            var qs = Vector128.Create(src.Slice(b + 6, 16));
            MulSigned16(((qs & Low4 | HighBits(qh)) - sixteen).AsSByte(), d, dst.Slice(o, 16));
            MulSigned16(((Vector128.ShiftRightLogical(qs, 4) | HighBits(qh >> 16)) - sixteen).AsSByte(), d, dst.Slice(o + 16, 16));
        }
    }

    // block_q5_1 { half d, m; u8 qh[4]; u8 qs[16]; }: y = q * d + m
    private static void Q5_1(ReadOnlySpan<byte> src, Span<float> dst)
    {
        for (int b = 0, o = 0; o < dst.Length; b += 24, o += 32)
        {
            float d = Half(src, b), m = Half(src, b + 2);
            var qh = BinaryPrimitives.ReadUInt32LittleEndian(src.Slice(b + 4, 4));
            var qs = Vector128.Create(src.Slice(b + 8, 16));
            MulAdd16(qs & Low4 | HighBits(qh), d, m, dst.Slice(o, 16));
            MulAdd16(Vector128.ShiftRightLogical(qs, 4) | HighBits(qh >> 16), d, m, dst.Slice(o + 16, 16));
        }
    }

    // block_q8_0 { half d; i8 qs[32]; }: y = q * d
    private static void Q8_0(ReadOnlySpan<byte> src, Span<float> dst)
    {
        for (int b = 0, o = 0; o < dst.Length; b += 34, o += 32)
        {
            var d = Half(src, b);
            MulSigned16(Vector128.Create(src.Slice(b + 2, 16)).AsSByte(), d, dst.Slice(o, 16));
            MulSigned16(Vector128.Create(src.Slice(b + 18, 16)).AsSByte(), d, dst.Slice(o + 16, 16));
        }
    }

    // ---- k-quants: 256-element super-blocks ----------------------------------------------------------------

    // block_q2_K { u8 scales[16]; u8 qs[64]; half d, dmin; }: y = (d * (sc & 15)) * q - dmin * (sc >> 4)
    private static void Q2_K(ReadOnlySpan<byte> src, Span<float> dst)
    {
        var three = Vector128.Create((byte)3);
        for (int b = 0, o = 0; o < dst.Length; b += 84)
        {
            var blk = src.Slice(b, 84);
            float d = Half(blk, 80), min = Half(blk, 82);
            var isc = 0;
            for (var n = 0; n < 2; n++)
            {
                var q0 = Vector128.Create(blk.Slice(16 + 32 * n, 16));
                var q1 = Vector128.Create(blk.Slice(32 + 32 * n, 16));
                for (var shift = 0; shift < 8; shift += 2)
                {
                    var sc = blk[isc++];
                    MulAdd16(Vector128.ShiftRightLogical(q0, shift) & three, d * (sc & 0xF), -(min * (sc >> 4)), dst.Slice(o, 16));
                    sc = blk[isc++];
                    MulAdd16(Vector128.ShiftRightLogical(q1, shift) & three, d * (sc & 0xF), -(min * (sc >> 4)), dst.Slice(o + 16, 16));
                    o += 32;
                }
            }
        }
    }

    // block_q3_K { u8 hmask[32]; u8 qs[64]; u8 scales[12]; half d; }: y = (d * (scale - 32)) * (q - (hbit ? 0 : 4))
    private static void Q3_K(ReadOnlySpan<byte> src, Span<float> dst)
    {
        var three = Vector128.Create((byte)3);
        var four = Vector128.Create((byte)4);
        Span<sbyte> scales = stackalloc sbyte[16];
        for (int b = 0, o = 0; o < dst.Length; b += 110)
        {
            var blk = src.Slice(b, 110);
            var dAll = Half(blk, 108);
            Q3Scales(blk.Slice(96, 12), scales);
            var hm0 = Vector128.Create(blk.Slice(0, 16));
            var hm1 = Vector128.Create(blk.Slice(16, 16));
            int isc = 0, bit = 0;
            for (var n = 0; n < 2; n++)
            {
                var q0 = Vector128.Create(blk.Slice(32 + 32 * n, 16));
                var q1 = Vector128.Create(blk.Slice(48 + 32 * n, 16));
                for (var shift = 0; shift < 8; shift += 2, bit++)
                {
                    var m = Vector128.Create((byte)(1 << bit));
                    var v0 = (Vector128.ShiftRightLogical(q0, shift) & three) - (Vector128.Equals(hm0 & m, Vector128<byte>.Zero) & four);
                    MulSigned16(v0.AsSByte(), dAll * (scales[isc++] - 32), dst.Slice(o, 16));
                    var v1 = (Vector128.ShiftRightLogical(q1, shift) & three) - (Vector128.Equals(hm1 & m, Vector128<byte>.Zero) & four);
                    MulSigned16(v1.AsSByte(), dAll * (scales[isc++] - 32), dst.Slice(o + 16, 16));
                    o += 32;
                }
            }
        }
    }

    // The 16 six-bit scales of a q3_K block, unpacked as dequantize_row_q3_K does with kmask1/kmask2.
    private static void Q3Scales(ReadOnlySpan<byte> packed, Span<sbyte> scales)
    {
        const uint kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
        Span<uint> aux = stackalloc uint[4];
        aux[0] = BinaryPrimitives.ReadUInt32LittleEndian(packed);
        aux[1] = BinaryPrimitives.ReadUInt32LittleEndian(packed[4..]);
        var tmp = BinaryPrimitives.ReadUInt32LittleEndian(packed[8..]);
        aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
        aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
        aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
        aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
        if (!BitConverter.IsLittleEndian) for (var i = 0; i < 4; i++) aux[i] = BinaryPrimitives.ReverseEndianness(aux[i]);
        MemoryMarshal.Cast<uint, sbyte>(aux).CopyTo(scales);
    }

    // get_scale_min_k4: the j-th 6-bit scale and min of a q4_K/q5_K block.
    private static (int Scale, int Min) ScaleMinK4(ReadOnlySpan<byte> q, int j) => j < 4
        ? (q[j] & 63, q[j + 4] & 63)
        : ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4));

    // block_q4_K { half d, dmin; u8 scales[12]; u8 qs[128]; }: y = (d * sc) * q - dmin * m
    private static void Q4_K(ReadOnlySpan<byte> src, Span<float> dst)
    {
        for (int b = 0, o = 0; o < dst.Length; b += 144)
        {
            var blk = src.Slice(b, 144);
            float d = Half(blk, 0), min = Half(blk, 2);
            var scales = blk.Slice(4, 12);
            for (var j = 0; j < 4; j++)
            {
                var (sc1, m1) = ScaleMinK4(scales, 2 * j);
                var (sc2, m2) = ScaleMinK4(scales, 2 * j + 1);
                float d1 = d * sc1, dm1 = min * m1, d2 = d * sc2, dm2 = min * m2;
                var q0 = Vector128.Create(blk.Slice(16 + 32 * j, 16));
                var q1 = Vector128.Create(blk.Slice(32 + 32 * j, 16));
                MulAdd16(q0 & Low4, d1, -dm1, dst.Slice(o, 16));
                MulAdd16(q1 & Low4, d1, -dm1, dst.Slice(o + 16, 16));
                MulAdd16(Vector128.ShiftRightLogical(q0, 4), d2, -dm2, dst.Slice(o + 32, 16));
                MulAdd16(Vector128.ShiftRightLogical(q1, 4), d2, -dm2, dst.Slice(o + 48, 16));
                o += 64;
            }
        }
    }

    // block_q5_K { half d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]; }: y = (d * sc) * (q + 16 * hbit) - dmin * m
    private static void Q5_K(ReadOnlySpan<byte> src, Span<float> dst)
    {
        var one = Vector128.Create((byte)1);
        for (int b = 0, o = 0; o < dst.Length; b += 176)
        {
            var blk = src.Slice(b, 176);
            float d = Half(blk, 0), min = Half(blk, 2);
            var scales = blk.Slice(4, 12);
            var qh0 = Vector128.Create(blk.Slice(16, 16));
            var qh1 = Vector128.Create(blk.Slice(32, 16));
            for (var j = 0; j < 4; j++)
            {
                var (sc1, m1) = ScaleMinK4(scales, 2 * j);
                var (sc2, m2) = ScaleMinK4(scales, 2 * j + 1);
                float d1 = d * sc1, dm1 = min * m1, d2 = d * sc2, dm2 = min * m2;
                var q0 = Vector128.Create(blk.Slice(48 + 32 * j, 16));
                var q1 = Vector128.Create(blk.Slice(64 + 32 * j, 16));
                var h0 = Vector128.ShiftRightLogical(qh0, 2 * j);
                var h1 = Vector128.ShiftRightLogical(qh1, 2 * j);
                MulAdd16((q0 & Low4) | Vector128.ShiftLeft(h0 & one, 4), d1, -dm1, dst.Slice(o, 16));
                MulAdd16((q1 & Low4) | Vector128.ShiftLeft(h1 & one, 4), d1, -dm1, dst.Slice(o + 16, 16));
                MulAdd16(Vector128.ShiftRightLogical(q0, 4) | Vector128.ShiftLeft(Vector128.ShiftRightLogical(h0, 1) & one, 4), d2, -dm2, dst.Slice(o + 32, 16));
                MulAdd16(Vector128.ShiftRightLogical(q1, 4) | Vector128.ShiftLeft(Vector128.ShiftRightLogical(h1, 1) & one, 4), d2, -dm2, dst.Slice(o + 48, 16));
                o += 64;
            }
        }
    }

    // block_q6_K { u8 ql[128]; u8 qh[64]; i8 scales[16]; half d; }: y = (d * sc) * (q - 32)
    private static void Q6_K(ReadOnlySpan<byte> src, Span<float> dst)
    {
        var three = Vector128.Create((byte)3);
        var bias = Vector128.Create((byte)32);
        for (int b = 0, o = 0; o < dst.Length; b += 210)
        {
            var blk = src.Slice(b, 210);
            var d = Half(blk, 208);
            var sc = MemoryMarshal.Cast<byte, sbyte>(blk.Slice(192, 16));
            for (var n = 0; n < 2; n++, o += 128)
            {
                var ql = blk.Slice(64 * n, 64);
                var qh = blk.Slice(128 + 32 * n, 32);
                var s = sc.Slice(8 * n, 8);
                for (var h = 0; h < 2; h++)
                {
                    var la = Vector128.Create(ql.Slice(16 * h, 16));
                    var lb = Vector128.Create(ql.Slice(32 + 16 * h, 16));
                    var hv = Vector128.Create(qh.Slice(16 * h, 16));
                    var q1 = (la & Low4) | Vector128.ShiftLeft(hv & three, 4);
                    var q2 = (lb & Low4) | Vector128.ShiftLeft(Vector128.ShiftRightLogical(hv, 2) & three, 4);
                    var q3 = Vector128.ShiftRightLogical(la, 4) | Vector128.ShiftLeft(Vector128.ShiftRightLogical(hv, 4) & three, 4);
                    var q4 = Vector128.ShiftRightLogical(lb, 4) | Vector128.ShiftLeft(Vector128.ShiftRightLogical(hv, 6), 4);
                    MulSigned16((q1 - bias).AsSByte(), d * s[h], dst.Slice(o + 16 * h, 16));
                    MulSigned16((q2 - bias).AsSByte(), d * s[h + 2], dst.Slice(o + 32 + 16 * h, 16));
                    MulSigned16((q3 - bias).AsSByte(), d * s[h + 4], dst.Slice(o + 64 + 16 * h, 16));
                    MulSigned16((q4 - bias).AsSByte(), d * s[h + 6], dst.Slice(o + 96 + 16 * h, 16));
                }
            }
        }
    }

    // ---- helpers ------------------------------------------------------------------------------------------

    private static Vector128<byte> Low4 => Vector128.Create((byte)0x0F);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Half(ReadOnlySpan<byte> src, int offset) => (float)BinaryPrimitives.ReadHalfLittleEndian(src.Slice(offset, 2));

    // Byte k of HighBitTable[x] is 0x10 when bit k of x is set: the fifth bits of q5_0/q5_1 elements.
    private static readonly ulong[] HighBitTable = BuildHighBitTable();

    private static ulong[] BuildHighBitTable()
    {
        var t = new ulong[256];
        for (var x = 0; x < 256; x++)
            for (var k = 0; k < 8; k++)
                if ((x >> k & 1) != 0) t[x] |= 0x10UL << (8 * k);
        return t;
    }

    /// <summary>0x10 in byte k where bit k of the low 16 bits of <paramref name="bits"/> is set.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<byte> HighBits(uint bits) =>
        Vector128.Create(HighBitTable[bits & 0xFF], HighBitTable[(bits >> 8) & 0xFF]).AsByte();

    /// <summary>y[i] = q[i] * d for 16 signed values.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void MulSigned16(Vector128<sbyte> q, float d, Span<float> y)
    {
        y = y[..16];
        var (s0, s1) = Vector128.Widen(q);
        var (i0, i1) = Vector128.Widen(s0);
        var (i2, i3) = Vector128.Widen(s1);
        var vd = Vector128.Create(d);
        ref var r = ref MemoryMarshal.GetReference(y);
        (Vector128.ConvertToSingle(i0) * vd).StoreUnsafe(ref r, 0);
        (Vector128.ConvertToSingle(i1) * vd).StoreUnsafe(ref r, 4);
        (Vector128.ConvertToSingle(i2) * vd).StoreUnsafe(ref r, 8);
        (Vector128.ConvertToSingle(i3) * vd).StoreUnsafe(ref r, 12);
    }

    /// <summary>
    /// y[i] = q[i] * d + m for 16 unsigned values (product rounded before the sum, as ggml's scalar code). ggml's
    /// <c>d * q - m</c> (the K-quants) is this with -m, bit for bit: IEEE products commute and x - m is x + (-m).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void MulAdd16(Vector128<byte> q, float d, float m, Span<float> y)
    {
        y = y[..16];
        var (u0, u1) = Vector128.Widen(q);
        var (i0, i1) = Vector128.Widen(u0);
        var (i2, i3) = Vector128.Widen(u1);
        var vd = Vector128.Create(d);
        var vm = Vector128.Create(m);
        ref var r = ref MemoryMarshal.GetReference(y);
        (Vector128.ConvertToSingle(i0.AsInt32()) * vd + vm).StoreUnsafe(ref r, 0);
        (Vector128.ConvertToSingle(i1.AsInt32()) * vd + vm).StoreUnsafe(ref r, 4);
        (Vector128.ConvertToSingle(i2.AsInt32()) * vd + vm).StoreUnsafe(ref r, 8);
        (Vector128.ConvertToSingle(i3.AsInt32()) * vd + vm).StoreUnsafe(ref r, 12);
    }
}
