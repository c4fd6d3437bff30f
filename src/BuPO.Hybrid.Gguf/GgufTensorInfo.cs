namespace BuPO.Hybrid.Gguf;

/// <summary>
/// A tensor's header entry. <see cref="Shape"/> is in ggml order: Shape[0] is the contiguous (innermost)
/// dimension, so a [rows x cols] row-major matrix has Shape = { cols, rows }.
/// <see cref="Offset"/> is relative to the start of the data section.
/// </summary>
public sealed record GgufTensorInfo(string Name, long[] Shape, GgmlType Type, long Offset, long ByteSize)
{
    /// <summary>Number of elements (product of the shape).</summary>
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);

    /// <summary>Shape[0], the contiguous dimension (a matrix's columns).</summary>
    public long Columns => Shape.Length > 0 ? Shape[0] : 1;

    /// <summary>Product of the other dimensions (a matrix's rows).</summary>
    public long Rows => Shape.Length > 0 ? ElementCount / Math.Max(1, Shape[0]) : 1;
}
