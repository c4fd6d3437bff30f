using System.Buffers.Binary;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace BuPO.Hybrid.Gguf;

/// <summary>Converts ggml tensor data to float32, matching ggml's own dequantization.</summary>
public static partial class GgmlDequantizer
{
    /// <summary>True for the types <see cref="Dequantize"/> handles.</summary>
    public static bool Supports(GgmlType type) => type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 or GgmlType.Q8_0
        || SupportsExtra(type);

    /// <summary>Dequantizes whole blocks: <paramref name="dst"/> receives one float per element.</summary>
    public static void Dequantize(GgmlType type, ReadOnlySpan<byte> src, Span<float> dst)
    {
        var expected = GgmlTypeInfo.RowBytes(type, dst.Length);
        if (src.Length != expected) throw new ArgumentException($"{type}: {dst.Length} elements need {expected} bytes, got {src.Length}");
        switch (type)
        {
            case GgmlType.F32: MemoryMarshal.Cast<byte, float>(src).CopyTo(dst); break;
            case GgmlType.F16: TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(src), dst); break;
            case GgmlType.BF16: Bf16ToFloat(MemoryMarshal.Cast<byte, ushort>(src), dst); break;
            case GgmlType.Q8_0: Q8_0(src, dst); break;
            default:
                if (!TryDequantizeExtra(type, src, dst))
                    throw new NotSupportedException($"dequantizing {type} is not supported");
                break;
        }
    }

    private static void Bf16ToFloat(ReadOnlySpan<ushort> src, Span<float> dst)
    {
        var bits = MemoryMarshal.Cast<float, uint>(dst);
        for (var i = 0; i < src.Length; i++) bits[i] = (uint)src[i] << 16;
    }

    private static void Q8_0(ReadOnlySpan<byte> src, Span<float> dst)
    {
        Span<float> q = stackalloc float[32];
        for (int b = 0, o = 0; o < dst.Length; b += 34, o += 32)
        {
            var d = (float)BinaryPrimitives.ReadHalfLittleEndian(src.Slice(b, 2));
            var qs = MemoryMarshal.Cast<byte, sbyte>(src.Slice(b + 2, 32));
            for (var j = 0; j < 32; j++) q[j] = qs[j];
            TensorPrimitives.Multiply(q, d, dst.Slice(o, 32));
        }
    }

    static partial void SupportsExtraCore(GgmlType type, ref bool supported);
    static partial void DequantizeExtraCore(GgmlType type, ReadOnlySpan<byte> src, Span<float> dst, ref bool done);

    private static bool SupportsExtra(GgmlType type) { var s = false; SupportsExtraCore(type, ref s); return s; }
    private static bool TryDequantizeExtra(GgmlType type, ReadOnlySpan<byte> src, Span<float> dst) { var done = false; DequantizeExtraCore(type, src, dst, ref done); return done; }
}
