using System.Buffers.Binary;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace BuPO.Hybrid.Gguf;

/// <summary>
/// Encodes float32 data as F32, F16, BF16 or Q8_0, bit-exact with ggml's reference encoders
/// (ggml_compute_fp32_to_fp16, ggml_compute_fp32_to_bf16, quantize_row_q8_0_ref); other types go through
/// llama.cpp's llama_model_quantize.
/// </summary>
public static class GgmlQuantizer
{
    /// <summary>True for the types <see cref="Quantize"/> writes.</summary>
    public static bool Supports(GgmlType type) => type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 or GgmlType.Q8_0;

    /// <summary>Encodes <paramref name="src"/> into <paramref name="dst"/>, which must be exactly the encoded size.</summary>
    public static void Quantize(GgmlType type, ReadOnlySpan<float> src, Span<byte> dst)
    {
        if (!Supports(type)) throw new NotSupportedException($"encoding {type} is done by llama_model_quantize, not here");
        var expected = GgmlTypeInfo.RowBytes(type, src.Length);
        if (dst.Length != expected) throw new ArgumentException($"{type}: {src.Length} elements need {expected} bytes, got {dst.Length}");
        switch (type)
        {
            case GgmlType.F32: MemoryMarshal.AsBytes(src).CopyTo(dst); break;
            case GgmlType.F16: ToF16(src, MemoryMarshal.Cast<byte, ushort>(dst)); break;
            case GgmlType.BF16: ToBf16(src, MemoryMarshal.Cast<byte, ushort>(dst)); break;
            case GgmlType.Q8_0: Q8_0(src, dst); break;
        }
    }

    /// <summary>ggml_compute_fp32_to_fp16: round to nearest even, overflow to infinity, every NaN to sign | 0x7E00.</summary>
    public static ushort FloatToF16(float f) => float.IsNaN(f)
        ? (ushort)((BitConverter.SingleToUInt32Bits(f) >> 16 & 0x8000) | 0x7E00)
        : BitConverter.HalfToUInt16Bits((Half)f);

    /// <summary>ggml_compute_fp32_to_bf16: round to nearest even, NaN kept quiet.</summary>
    public static ushort FloatToBf16(float f)
    {
        var u = BitConverter.SingleToUInt32Bits(f);
        if ((u & 0x7fffffff) > 0x7f800000) return (ushort)((u >> 16) | 64);
        return (ushort)((u + (0x7fff + ((u >> 16) & 1))) >> 16);
    }

    private static void ToF16(ReadOnlySpan<float> src, Span<ushort> dst)
    {
        TensorPrimitives.ConvertToHalf(src, MemoryMarshal.Cast<ushort, Half>(dst));
        // IEEE conversion keeps NaN payloads; ggml writes every NaN as the canonical quiet NaN.
        for (var i = 0; i < dst.Length; i++)
            if ((dst[i] & 0x7C00) == 0x7C00 && (dst[i] & 0x03FF) != 0) dst[i] = FloatToF16(src[i]);
    }

    private static void ToBf16(ReadOnlySpan<float> src, Span<ushort> dst)
    {
        var bits = MemoryMarshal.Cast<float, uint>(src);
        var i = 0;
        if (Vector128.IsHardwareAccelerated)
        {
            var absMask = Vector128.Create(0x7fffffffu);
            var inf = Vector128.Create(0x7f800000u);
            var bias = Vector128.Create(0x7fffu);
            var one = Vector128.Create(1u);
            for (; i + 8 <= bits.Length; i += 8)
            {
                var a = Vector128.Create(bits.Slice(i, 4));
                var b = Vector128.Create(bits.Slice(i + 4, 4));
                if ((Vector128.GreaterThan(a & absMask, inf) | Vector128.GreaterThan(b & absMask, inf)) != Vector128<uint>.Zero)
                {
                    for (var j = i; j < i + 8; j++) dst[j] = FloatToBf16(src[j]); // a NaN in the group
                    continue;
                }
                var ra = Vector128.ShiftRightLogical(a + bias + (Vector128.ShiftRightLogical(a, 16) & one), 16);
                var rb = Vector128.ShiftRightLogical(b + bias + (Vector128.ShiftRightLogical(b, 16) & one), 16);
                Vector128.Narrow(ra, rb).CopyTo(dst.Slice(i, 8));
            }
        }
        for (; i < bits.Length; i++) dst[i] = FloatToBf16(src[i]);
    }

    // quantize_row_q8_0_ref: amax = max |x| (NaN handled as ggml's MAX macro does), d = amax/127,
    // q = roundf(x * (1/d)) (half away from zero), d stored with ggml's fp32->fp16.
    private static void Q8_0(ReadOnlySpan<float> src, Span<byte> dst)
    {
        Span<float> scaled = stackalloc float[32];
        for (int b = 0, i = 0; i < src.Length; b += 34, i += 32)
        {
            var x = src.Slice(i, 32);
            var amax = MathF.Abs(TensorPrimitives.MaxMagnitude(x));
            if (float.IsNaN(amax))
            {
                amax = 0f;
                foreach (var v in x) { var a = MathF.Abs(v); amax = amax > a ? amax : a; }
            }
            var d = amax / 127f;
            var id = d != 0 ? 1f / d : 0f;
            BinaryPrimitives.WriteUInt16LittleEndian(dst.Slice(b, 2), FloatToF16(d));
            var qs = dst.Slice(b + 2, 32);
            if (Vector128.IsHardwareAccelerated)
            {
                var vid = Vector128.Create(id);
                var r0 = RoundAway(Vector128.Create(x[..4]) * vid, Vector128.Create(x[4..8]) * vid);
                var r1 = RoundAway(Vector128.Create(x[8..12]) * vid, Vector128.Create(x[12..16]) * vid);
                var r2 = RoundAway(Vector128.Create(x[16..20]) * vid, Vector128.Create(x[20..24]) * vid);
                var r3 = RoundAway(Vector128.Create(x[24..28]) * vid, Vector128.Create(x[28..32]) * vid);
                Vector128.Narrow(r0, r1).AsByte().CopyTo(qs);
                Vector128.Narrow(r2, r3).AsByte().CopyTo(qs[16..]);
                continue;
            }
            TensorPrimitives.Multiply(x, id, scaled);
            for (var j = 0; j < 32; j++) qs[j] = (byte)(sbyte)(int)MathF.Round(scaled[j], MidpointRounding.AwayFromZero);
        }
    }

    /// <summary>roundf of 8 values (halfway cases away from zero), as int16: t = trunc(v), plus sign(v) when |v - t| >= 0.5 (exact).</summary>
    private static Vector128<short> RoundAway(Vector128<float> a, Vector128<float> b)
    {
        static Vector128<int> One(Vector128<float> v)
        {
            var t = Vector128.Truncate(v);
            var up = Vector128.GreaterThanOrEqual(Vector128.Abs(v - t), Vector128.Create(0.5f));
            var r = t + (Vector128.CopySign(Vector128<float>.One, v) & up);
            return Vector128.ConvertToInt32(r);
        }
        return Vector128.Narrow(One(a), One(b));
    }
}
