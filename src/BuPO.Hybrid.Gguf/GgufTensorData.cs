using System.Buffers;
using System.Runtime.InteropServices;

namespace BuPO.Hybrid.Gguf;

/// <summary>
/// Fills rows [<paramref name="firstRow"/>, firstRow + rowCount) of a tensor viewed as [Rows x Columns]
/// (Columns = Shape[0]) into <paramref name="destination"/> (rowCount * Columns floats).
/// </summary>
public delegate void GgufRowSource(long firstRow, int rowCount, Span<float> destination);

/// <summary>
/// Where a tensor's data comes from when <see cref="GgufWriter"/> writes it. Nothing is read or computed
/// until the writer reaches that tensor, and float sources are encoded in chunks, so a model need not be
/// held in memory twice. Raw sources (<see cref="FromBytes"/>, <see cref="FromStream"/>) must already be in
/// the tensor's type; float sources are encoded to it with <see cref="GgmlQuantizer"/> (F32, F16, BF16, Q8_0).
/// </summary>
public abstract class GgufTensorData
{
    /// <summary>Floats encoded per chunk by the float sources.</summary>
    internal const int ChunkElements = 1 << 20;

    private protected GgufTensorData() { }

    /// <summary>Already-encoded bytes, exactly the tensor's byte size.</summary>
    public static GgufTensorData FromBytes(ReadOnlyMemory<byte> bytes) => new BytesData(bytes);

    /// <summary>Already-encoded bytes written by a callback when the writer reaches the tensor; it must write exactly the tensor's byte size.</summary>
    public static GgufTensorData FromStream(Action<Stream> write) => new StreamData(write ?? throw new ArgumentNullException(nameof(write)));

    /// <summary>Float values (row-major, Shape[0] contiguous), encoded to the tensor's type.</summary>
    public static GgufTensorData FromFloats(ReadOnlyMemory<float> values) => new FloatData(() => values, values.Length);

    /// <summary>Float values produced when the writer reaches the tensor (so only one tensor's floats exist at a time).</summary>
    public static GgufTensorData FromFloats(Func<ReadOnlyMemory<float>> values) => new FloatData(values ?? throw new ArgumentNullException(nameof(values)), -1);

    /// <summary>Float rows produced chunk by chunk (about <c>2^20</c> floats at a time), encoded to the tensor's type.</summary>
    public static GgufTensorData FromRows(GgufRowSource rows) => new RowData(rows ?? throw new ArgumentNullException(nameof(rows)));

    /// <summary>
    /// A tensor of an open file: its bytes copied as they are when the written type is the same, otherwise
    /// dequantized and re-encoded (<see cref="GgmlDequantizer"/> to <see cref="GgmlQuantizer"/>). The file must
    /// stay open until the write is done.
    /// </summary>
    public static GgufTensorData FromFile(GgufFile file, GgufTensorInfo tensor) => new FileData(file, tensor);

    /// <summary>Throws <see cref="ArgumentException"/> unless this source can be written as <paramref name="type"/> for a tensor of that shape.</summary>
    internal abstract void Check(string name, long[] shape, GgmlType type);

    /// <summary>False for raw (already encoded) bytes, which cannot be re-encoded to another type.</summary>
    internal virtual bool CanConvert => true;

    /// <summary>Writes exactly <paramref name="byteSize"/> bytes of the tensor to <paramref name="output"/>.</summary>
    internal abstract void Write(Stream output, string name, long[] shape, GgmlType type, long byteSize);

    private static long Elements(long[] shape) => shape.Aggregate(1L, (a, b) => a * b);

    private static void RequireEncodable(string name, GgmlType type)
    {
        if (!GgmlQuantizer.Supports(type))
            throw new ArgumentException($"tensor '{name}': float data cannot be encoded as {type} here (F32, F16, BF16 and Q8_0 can; use llama_model_quantize for others)");
    }

    /// <summary>Encodes rows chunk by chunk: <paramref name="fill"/> puts rows [first, first+count) in the span.</summary>
    private protected static void EncodeRows(Stream output, long[] shape, GgmlType type, GgufRowSource fill)
    {
        var cols = shape[0];
        var rows = cols == 0 ? 0 : Elements(shape) / cols;
        if (rows == 0) return;
        var rowsPerChunk = (int)Math.Clamp(ChunkElements / Math.Max(1, cols), 1, rows);
        var floats = ArrayPool<float>.Shared.Rent((int)(rowsPerChunk * cols));
        var bytes = ArrayPool<byte>.Shared.Rent((int)GgmlTypeInfo.RowBytes(type, rowsPerChunk * cols));
        try
        {
            for (long r = 0; r < rows; r += rowsPerChunk)
            {
                var count = (int)Math.Min(rowsPerChunk, rows - r);
                var n = (int)(count * cols);
                var src = floats.AsSpan(0, n);
                fill(r, count, src);
                var dst = bytes.AsSpan(0, (int)GgmlTypeInfo.RowBytes(type, n));
                GgmlQuantizer.Quantize(type, src, dst);
                output.Write(dst);
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(floats);
            ArrayPool<byte>.Shared.Return(bytes);
        }
    }

    private sealed class BytesData(ReadOnlyMemory<byte> bytes) : GgufTensorData
    {
        internal override bool CanConvert => false;

        internal override void Check(string name, long[] shape, GgmlType type)
        {
            var expected = GgmlTypeInfo.RowBytes(type, Elements(shape));
            if (bytes.Length != expected) throw new ArgumentException($"tensor '{name}': {type} {string.Join('x', shape)} needs {expected} bytes, got {bytes.Length}");
        }

        internal override void Write(Stream output, string name, long[] shape, GgmlType type, long byteSize) => output.Write(bytes.Span);
    }

    private sealed class StreamData(Action<Stream> write) : GgufTensorData
    {
        internal override bool CanConvert => false;

        internal override void Check(string name, long[] shape, GgmlType type) { }

        internal override void Write(Stream output, string name, long[] shape, GgmlType type, long byteSize)
        {
            using var limited = new ExactLengthStream(output, byteSize, name);
            write(limited);
            limited.CheckComplete();
        }
    }

    private sealed class FloatData(Func<ReadOnlyMemory<float>> values, long knownLength) : GgufTensorData
    {
        internal override void Check(string name, long[] shape, GgmlType type)
        {
            RequireEncodable(name, type);
            if (knownLength >= 0 && knownLength != Elements(shape))
                throw new ArgumentException($"tensor '{name}': {string.Join('x', shape)} needs {Elements(shape)} floats, got {knownLength}");
        }

        internal override void Write(Stream output, string name, long[] shape, GgmlType type, long byteSize)
        {
            var data = values();
            var n = Elements(shape);
            if (data.Length != n) throw new InvalidOperationException($"tensor '{name}': {string.Join('x', shape)} needs {n} floats, the source gave {data.Length}");
            if (type == GgmlType.F32) { output.Write(MemoryMarshal.AsBytes(data.Span)); return; }
            var cols = (int)shape[0];
            EncodeRows(output, shape, type, (first, count, dst) => data.Span.Slice((int)(first * cols), count * cols).CopyTo(dst));
        }
    }

    private sealed class RowData(GgufRowSource rows) : GgufTensorData
    {
        internal override void Check(string name, long[] shape, GgmlType type) => RequireEncodable(name, type);

        internal override void Write(Stream output, string name, long[] shape, GgmlType type, long byteSize) =>
            EncodeRows(output, shape, type, rows);
    }

    private sealed class FileData(GgufFile file, GgufTensorInfo tensor) : GgufTensorData
    {
        internal override void Check(string name, long[] shape, GgmlType type)
        {
            if (Elements(shape) != tensor.ElementCount || shape[0] != tensor.Columns)
                throw new ArgumentException($"tensor '{name}': shape {string.Join('x', shape)} does not match '{tensor.Name}' of {file.Path} ({string.Join('x', tensor.Shape)})");
            if (type == tensor.Type) return;
            if (!GgmlDequantizer.Supports(tensor.Type)) throw new ArgumentException($"tensor '{name}': cannot convert {tensor.Type} (no dequantizer) to {type}");
            RequireEncodable(name, type);
        }

        internal override void Write(Stream output, string name, long[] shape, GgmlType type, long byteSize)
        {
            var rows = tensor.Rows;
            if (tensor.Columns == 0 || rows == 0) return;
            var rowBytes = GgmlTypeInfo.RowBytes(tensor.Type, tensor.Columns);
            if (type == tensor.Type)
            {
                var rowsPerChunk = (int)Math.Clamp((1L << 24) / Math.Max(1, rowBytes), 1, rows);
                for (long r = 0; r < rows; r += rowsPerChunk)
                    output.Write(file.GetTensorRowBytes(tensor, r, (int)Math.Min(rowsPerChunk, rows - r)));
                return;
            }
            EncodeRows(output, shape, type, (first, count, dst) => GgmlDequantizer.Dequantize(tensor.Type, file.GetTensorRowBytes(tensor, first, count), dst));
        }
    }

    /// <summary>A write-only view that lets a callback write exactly <c>length</c> bytes.</summary>
    private sealed class ExactLengthStream(Stream inner, long length, string name) : Stream
    {
        private long _written;
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => length;
        public override long Position { get => _written; set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            if (buffer.Length > length - _written)
                throw new InvalidOperationException($"tensor '{name}': the data callback wrote more than the tensor's {length} bytes");
            inner.Write(buffer);
            _written += buffer.Length;
        }

        public override void WriteByte(byte value) => Write([value]);

        public void CheckComplete()
        {
            if (_written != length) throw new InvalidOperationException($"tensor '{name}': the data callback wrote {_written} bytes, the tensor has {length}");
        }
    }
}
