using System.Buffers.Binary;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace BuPO.Hybrid.Gguf;

/// <summary>
/// Encodes float32 data as F32, F16, BF16 or Q8_0, bit-exact with ggml's reference encoders
/// (other types go through llama.cpp's llama_model_quantize).
/// </summary>
public static class GgmlQuantizer
{
    /// <summary>True for the types <see cref="Quantize"/> writes.</summary>
    public static bool Supports(GgmlType type) => type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 or GgmlType.Q8_0;

    /// <summary>Encodes <paramref name="src"/> into <paramref name="dst"/>, which must be exactly the encoded size.</summary>
    public static void Quantize(GgmlType type, ReadOnlySpan<float> src, Span<byte> dst)
    {
        var expected = GgmlTypeInfo.RowBytes(type, src.Length);
        if (dst.Length != expected) throw new ArgumentException($"{type}: {src.Length} elements need {expected} bytes, got {dst.Length}");
        switch (type)
        {
            case GgmlType.F32: MemoryMarshal.AsBytes(src).CopyTo(dst); break;
            case GgmlType.F16: TensorPrimitives.ConvertToHalf(src, MemoryMarshal.Cast<byte, Half>(dst)); break;
            case GgmlType.BF16:
                var o = MemoryMarshal.Cast<byte, ushort>(dst);
                for (var i = 0; i < src.Length; i++) o[i] = FloatToBf16(src[i]);
                break;
            case GgmlType.Q8_0: Q8_0(src, dst); break;
            default: throw new NotSupportedException($"encoding {type} is done by llama_model_quantize, not here");
        }
    }

    /// <summary>ggml_compute_fp32_to_bf16: round to nearest even, NaN kept quiet.</summary>
    public static ushort FloatToBf16(float f)
    {
        var u = BitConverter.SingleToUInt32Bits(f);
        if ((u & 0x7fffffff) > 0x7f800000) return (ushort)((u >> 16) | 64);
        return (ushort)((u + (0x7fff + ((u >> 16) & 1))) >> 16);
    }

    // quantize_row_q8_0_ref: d = amax/127, q = round(x/d) (roundf: half away from zero), d stored as fp16.
    private static void Q8_0(ReadOnlySpan<float> src, Span<byte> dst)
    {
        for (int b = 0, i = 0; i < src.Length; b += 34, i += 32)
        {
            var x = src.Slice(i, 32);
            var amax = TensorPrimitives.MaxMagnitude(x);
            amax = MathF.Abs(amax);
            var d = amax / 127f;
            var id = d != 0 ? 1f / d : 0f;
            BinaryPrimitives.WriteHalfLittleEndian(dst.Slice(b, 2), (Half)d);
            var qs = MemoryMarshal.Cast<byte, sbyte>(dst.Slice(b + 2, 32));
            for (var j = 0; j < 32; j++) qs[j] = (sbyte)MathF.Round(x[j] * id, MidpointRounding.AwayFromZero);
        }
    }
}
