using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;

namespace BuPO.Hybrid.Gguf;

/// <summary>A tensor queued in a <see cref="GgufWriter"/>: name, ggml shape (Shape[0] contiguous), type and data source.</summary>
public sealed record GgufWriterTensor(string Name, long[] Shape, GgmlType Type, GgufTensorData Data)
{
    /// <summary>Encoded size in bytes (without padding).</summary>
    public long ByteSize => GgmlTypeInfo.RowBytes(Type, Shape.Aggregate(1L, (a, b) => a * b));
}

/// <summary>
/// Writes a GGUF file (v3 by default) with the layout gguf.cpp writes: header, key/value pairs in order, tensor
/// infos, zero padding to general.alignment (32 unless set), then each tensor's data zero-padded to the
/// alignment, offsets packed in order. A file with no tensors ends right after the header (as gguf-py writes
/// vocab-only files). Values and tensors are checked when added, so a writer never produces a file
/// <see cref="GgufFile"/> rejects. <see cref="WriteTo(string)"/> writes under a temporary name and renames it over the
/// target, deleting the temporary file on failure: the target is either the complete new file or untouched.
/// </summary>
public sealed class GgufWriter
{
    private readonly List<KeyValuePair<string, GgufValue>> _metadata = [];
    private readonly List<GgufWriterTensor> _tensors = [];
    private uint _version = 3;

    /// <summary>Format version written, 3 (default) or 2 (same layout).</summary>
    public uint Version
    {
        get => _version;
        set => _version = value is 2 or 3 ? value : throw new ArgumentOutOfRangeException(nameof(value), $"GGUF version {value}: only 2 and 3 can be written");
    }

    /// <summary>Metadata in the order it will be written.</summary>
    public IReadOnlyList<KeyValuePair<string, GgufValue>> Metadata => _metadata;

    /// <summary>Tensors in the order they will be written.</summary>
    public IReadOnlyList<GgufWriterTensor> Tensors => _tensors;

    /// <summary>The data alignment: general.alignment when set, else 32.</summary>
    public int Alignment => Get("general.alignment") is { Value: uint a } ? (int)a : GgufFile.DefaultAlignment;

    /// <summary>A writer holding all metadata and tensors of <paramref name="source"/>, in order, with tensor data read
    /// from the source when written (keep it open until then). Writing it unchanged reproduces a v3 file written by
    /// llama.cpp or gguf-py byte for byte.</summary>
    public static GgufWriter FromFile(GgufFile source)
    {
        ArgumentNullException.ThrowIfNull(source);
        var w = new GgufWriter { Version = source.Version };
        foreach (var kv in source.Metadata) w.Set(kv.Key, kv.Value);
        foreach (var t in source.Tensors) w.AddTensor(t.Name, t.Shape, t.Type, GgufTensorData.FromFile(source, t));
        return w;
    }

    /// <summary>Copies <paramref name="source"/> to <paramref name="path"/> (atomically), after <paramref name="edit"/>
    /// has changed what it wants: keys (<see cref="Set"/>, <see cref="Remove"/>) and tensors (<see cref="ReplaceTensor(string, GgmlType, GgufTensorData)"/>, <see cref="ConvertTensor"/>, ...).</summary>
    public static void Copy(GgufFile source, string path, Action<GgufWriter>? edit = null)
    {
        var w = FromFile(source);
        edit?.Invoke(w);
        w.WriteTo(path);
    }

    // ---- metadata ----

    /// <summary>The value of a key, or null.</summary>
    public GgufValue? Get(string key) => IndexOfKey(key) is var i and >= 0 ? _metadata[i].Value : null;

    /// <summary>True when the key is set.</summary>
    public bool Has(string key) => IndexOfKey(key) >= 0;

    /// <summary>Sets a key: an existing key keeps its position, a new one is appended.</summary>
    /// <exception cref="ArgumentException">The key is empty, or the value's .NET type does not match its GGUF type,
    /// or general.alignment is not a uint32 power of two.</exception>
    public GgufWriter Set(string key, GgufValue value)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(value);
        if (key.Length == 0) throw new ArgumentException("metadata key is empty", nameof(key));
        ValidateValue(key, value);
        var i = IndexOfKey(key);
        if (i >= 0) _metadata[i] = new(key, value);
        else _metadata.Add(new(key, value));
        return this;
    }

    public GgufWriter SetString(string key, string value) => Set(key, GgufValue.Of(value));
    public GgufWriter SetUInt32(string key, uint value) => Set(key, GgufValue.Of(value));
    public GgufWriter SetInt32(string key, int value) => Set(key, GgufValue.Of(value));
    public GgufWriter SetFloat32(string key, float value) => Set(key, GgufValue.Of(value));
    public GgufWriter SetBool(string key, bool value) => Set(key, GgufValue.Of(value));

    /// <summary>Removes a key; false when it was not set.</summary>
    public bool Remove(string key)
    {
        var i = IndexOfKey(key);
        if (i < 0) return false;
        _metadata.RemoveAt(i);
        return true;
    }

    /// <summary>Removes every key the predicate selects; returns how many.</summary>
    public int RemoveWhere(Func<string, bool> predicate) => _metadata.RemoveAll(kv => predicate(kv.Key));

    private int IndexOfKey(string key) => _metadata.FindIndex(kv => kv.Key == key);

    // ---- tensors ----

    /// <summary>Appends a tensor.</summary>
    /// <exception cref="ArgumentException">Duplicate or over-long name (more than 63 UTF-8 bytes), a shape outside
    /// 1..4 non-negative dimensions, Shape[0] not a multiple of the type's block size, or data that cannot give this type.</exception>
    public GgufWriter AddTensor(string name, long[] shape, GgmlType type, GgufTensorData data)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (IndexOfTensor(name) >= 0) throw new ArgumentException($"tensor '{name}' is already added", nameof(name));
        _tensors.Add(MakeTensor(name, shape, type, data));
        return this;
    }

    /// <summary>Replaces a tensor's type and data, keeping its name, shape and position.</summary>
    public GgufWriter ReplaceTensor(string name, GgmlType type, GgufTensorData data)
    {
        var i = RequireTensor(name);
        _tensors[i] = MakeTensor(name, _tensors[i].Shape, type, data);
        return this;
    }

    /// <summary>Replaces a tensor's data, keeping its name, shape, type and position.</summary>
    public GgufWriter ReplaceTensor(string name, GgufTensorData data) => ReplaceTensor(name, _tensors[RequireTensor(name)].Type, data);

    /// <summary>Replaces a tensor's shape, type and data, keeping its position.</summary>
    public GgufWriter ReplaceTensor(string name, long[] shape, GgmlType type, GgufTensorData data)
    {
        var i = RequireTensor(name);
        _tensors[i] = MakeTensor(name, shape, type, data);
        return this;
    }

    /// <summary>Re-encodes a tensor's current data as <paramref name="type"/> (e.g. F32 to Q8_0): its data must come from a
    /// file (<see cref="FromFile"/>) or from floats.</summary>
    public GgufWriter ConvertTensor(string name, GgmlType type)
    {
        var i = RequireTensor(name);
        var t = _tensors[i];
        if (type == t.Type) return this;
        if (!t.Data.CanConvert) throw new ArgumentException($"tensor '{name}': its data is raw {t.Type} bytes and cannot be re-encoded as {type}");
        _tensors[i] = MakeTensor(name, t.Shape, type, t.Data);
        return this;
    }

    /// <summary>Removes a tensor; false when there is none by that name.</summary>
    public bool RemoveTensor(string name)
    {
        var i = IndexOfTensor(name);
        if (i < 0) return false;
        _tensors.RemoveAt(i);
        return true;
    }

    private int IndexOfTensor(string name) => _tensors.FindIndex(t => t.Name == name);

    private int RequireTensor(string name) => IndexOfTensor(name) is var i and >= 0 ? i : throw new ArgumentException($"no tensor '{name}' to replace", nameof(name));

    private static GgufWriterTensor MakeTensor(string name, long[] shape, GgmlType type, GgufTensorData data)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(data);
        if (Encoding.UTF8.GetByteCount(name) > GgufFile.MaxTensorNameBytes)
            throw new ArgumentException($"tensor '{name}': name longer than {GgufFile.MaxTensorNameBytes} UTF-8 bytes");
        if (shape.Length is 0 or > 4) throw new ArgumentException($"tensor '{name}': {shape.Length} dimensions, must be 1..4");
        if (!GgmlTypeInfo.IsKnown(type)) throw new ArgumentException($"tensor '{name}': unknown ggml type {(uint)type}");
        long elements = 1;
        foreach (var ne in shape)
        {
            if (ne < 0) throw new ArgumentException($"tensor '{name}': negative dimension {ne}");
            if (ne != 0 && elements > long.MaxValue / ne) throw new ArgumentException($"tensor '{name}': element count overflows");
            elements *= ne;
        }
        var block = GgmlTypeInfo.BlockSize(type);
        if (shape[0] % block != 0) throw new ArgumentException($"tensor '{name}': ne[0] = {shape[0]} is not a multiple of {type}'s block size {block}");
        if (elements / block > long.MaxValue / 2 / GgmlTypeInfo.BlockBytes(type)) throw new ArgumentException($"tensor '{name}': byte size overflows");
        var copy = (long[])shape.Clone();
        data.Check(name, copy, type);
        return new GgufWriterTensor(name, copy, type, data);
    }

    // ---- layout and output ----

    /// <summary>Size in bytes of the file <see cref="WriteTo(Stream)"/> produces.</summary>
    public long ComputeFileSize()
    {
        var size = HeaderSize();
        if (_tensors.Count == 0) return size;
        var a = Alignment;
        size = Pad(size, a);
        foreach (var t in _tensors) size += Pad(t.ByteSize, a);
        return size;
    }

    private static long Pad(long n, long a) => (n + a - 1) / a * a;

    private long HeaderSize()
    {
        long n = 4 + 4 + 8 + 8;
        foreach (var kv in _metadata) n += StringSize(kv.Key) + 4 + PayloadSize(kv.Value.Type, kv.Value.Value);
        foreach (var t in _tensors) n += StringSize(t.Name) + 4 + 8L * t.Shape.Length + 4 + 8;
        return n;
    }

    private static long StringSize(string s) => 8 + Encoding.UTF8.GetByteCount(s);

    private static long PayloadSize(GgufValueType type, object value) => type switch
    {
        GgufValueType.String => StringSize((string)value),
        GgufValueType.Array => ArrayBodySize((GgufArray)value),
        _ => FixedSize(type),
    };

    private static long ArrayBodySize(GgufArray a)
    {
        long n = 4 + 8;
        switch (a.ElementType)
        {
            case GgufValueType.String: foreach (var s in (string[])a.Items) n += StringSize(s); break;
            case GgufValueType.Array: foreach (var x in (GgufArray[])a.Items) n += ArrayBodySize(x); break;
            default: n += (long)a.Count * FixedSize(a.ElementType); break;
        }
        return n;
    }

    private static int FixedSize(GgufValueType t) => t switch
    {
        GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
        GgufValueType.UInt16 or GgufValueType.Int16 => 2,
        GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
        _ => 8,
    };

    /// <summary>
    /// Writes the file to <paramref name="path"/> atomically (<see cref="AtomicFile"/>): under a temporary name beside it,
    /// flushed to disk, then renamed over <paramref name="path"/>. On any failure the temporary file is deleted and the
    /// exception rethrown; an existing file at <paramref name="path"/> is then unchanged.
    /// </summary>
    public void WriteTo(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        AtomicFile.WriteStream(path, WriteTo, flushToDisk: true, bufferSize: 1 << 20);
    }

    /// <summary>Writes the file to a stream (from its current position; the stream need not seek).</summary>
    public void WriteTo(Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("GGUF writing needs a little-endian machine");
        foreach (var kv in _metadata) ValidateValue(kv.Key, kv.Value); // arrays are mutable: check again
        var alignment = Alignment;
        var o = new Output(stream);
        o.Bytes("GGUF"u8);
        o.U32(_version);
        o.U64((ulong)_tensors.Count);
        o.U64((ulong)_metadata.Count);
        foreach (var kv in _metadata)
        {
            o.String(kv.Key);
            o.U32((uint)kv.Value.Type);
            WritePayload(o, kv.Value.Type, kv.Value.Value);
        }
        long offset = 0;
        foreach (var t in _tensors)
        {
            o.String(t.Name);
            o.U32((uint)t.Shape.Length);
            foreach (var ne in t.Shape) o.U64((ulong)ne);
            o.U32((uint)t.Type);
            o.U64((ulong)offset);
            offset += Pad(t.ByteSize, alignment);
        }
        if (_tensors.Count > 0) o.Pad(alignment); // no tensors: the file ends with the header, as gguf-py writes it
        foreach (var t in _tensors)
        {
            var before = o.Written;
            t.Data.Write(o, t.Name, t.Shape, t.Type, t.ByteSize);
            if (o.Written - before != t.ByteSize)
                throw new InvalidOperationException($"tensor '{t.Name}': its data source wrote {o.Written - before} bytes, the tensor has {t.ByteSize}");
            o.Pad(alignment);
        }
        o.Flush();
    }

    private static void WritePayload(Output o, GgufValueType type, object value)
    {
        switch (type)
        {
            case GgufValueType.UInt8: o.Bytes([(byte)value]); break;
            case GgufValueType.Int8: o.Bytes([(byte)(sbyte)value]); break;
            case GgufValueType.UInt16: o.Raw((ushort)value); break;
            case GgufValueType.Int16: o.Raw((short)value); break;
            case GgufValueType.UInt32: o.Raw((uint)value); break;
            case GgufValueType.Int32: o.Raw((int)value); break;
            case GgufValueType.Float32: o.Raw((float)value); break;
            case GgufValueType.Bool: o.Bytes([(bool)value ? (byte)1 : (byte)0]); break;
            case GgufValueType.String: o.String((string)value); break;
            case GgufValueType.UInt64: o.Raw((ulong)value); break;
            case GgufValueType.Int64: o.Raw((long)value); break;
            case GgufValueType.Float64: o.Raw((double)value); break;
            case GgufValueType.Array: WriteArrayBody(o, (GgufArray)value); break;
        }
    }

    private static void WriteArrayBody(Output o, GgufArray a)
    {
        o.U32((uint)a.ElementType);
        o.U64((ulong)a.Count);
        switch (a.Items)
        {
            case string[] ss: foreach (var s in ss) o.String(s); break;
            case bool[] bs: foreach (var b in bs) o.Bytes([b ? (byte)1 : (byte)0]); break;
            case GgufArray[] aa: foreach (var x in aa) WriteArrayBody(o, x); break;
            case byte[] x: o.Bytes(x); break;
            case sbyte[] x: o.Bytes(MemoryMarshal.AsBytes(x.AsSpan())); break;
            case ushort[] x: o.Bytes(MemoryMarshal.AsBytes(x.AsSpan())); break;
            case short[] x: o.Bytes(MemoryMarshal.AsBytes(x.AsSpan())); break;
            case uint[] x: o.Bytes(MemoryMarshal.AsBytes(x.AsSpan())); break;
            case int[] x: o.Bytes(MemoryMarshal.AsBytes(x.AsSpan())); break;
            case float[] x: o.Bytes(MemoryMarshal.AsBytes(x.AsSpan())); break;
            case ulong[] x: o.Bytes(MemoryMarshal.AsBytes(x.AsSpan())); break;
            case long[] x: o.Bytes(MemoryMarshal.AsBytes(x.AsSpan())); break;
            case double[] x: o.Bytes(MemoryMarshal.AsBytes(x.AsSpan())); break;
        }
    }

    // ---- validation ----

    private static Type ClrType(GgufValueType t) => t switch
    {
        GgufValueType.UInt8 => typeof(byte),
        GgufValueType.Int8 => typeof(sbyte),
        GgufValueType.UInt16 => typeof(ushort),
        GgufValueType.Int16 => typeof(short),
        GgufValueType.UInt32 => typeof(uint),
        GgufValueType.Int32 => typeof(int),
        GgufValueType.Float32 => typeof(float),
        GgufValueType.Bool => typeof(bool),
        GgufValueType.String => typeof(string),
        GgufValueType.UInt64 => typeof(ulong),
        GgufValueType.Int64 => typeof(long),
        GgufValueType.Float64 => typeof(double),
        GgufValueType.Array => typeof(GgufArray),
        _ => throw new ArgumentException($"unknown GGUF value type {(uint)t}"),
    };

    private static void ValidateValue(string key, GgufValue v)
    {
        ArgumentNullException.ThrowIfNull(v.Value, $"metadata '{key}'");
        if (v.Value.GetType() != ClrType(v.Type))
            throw new ArgumentException($"metadata '{key}': a {v.Type} value must hold a {ClrType(v.Type).Name}, not a {v.Value.GetType().Name}");
        if (v.Value is string s) CheckString(key, s);
        if (v.Value is GgufArray a) ValidateArray(key, a, 0);
        if (key == "general.alignment")
        {
            if (v.Value is not uint u) throw new ArgumentException($"metadata 'general.alignment' must be uint32, not {v.Type}");
            if (u == 0 || (u & (u - 1)) != 0 || u > 1 << 20) throw new ArgumentException($"metadata 'general.alignment': {u} is not a power of two up to 2^20");
        }
    }

    private static void CheckString(string key, string s)
    {
        ArgumentNullException.ThrowIfNull(s, $"metadata '{key}'");
        if (s.Length > GgufFile.MaxStringBytes / 3 && Encoding.UTF8.GetByteCount(s) > GgufFile.MaxStringBytes)
            throw new ArgumentException($"metadata '{key}': string longer than {GgufFile.MaxStringBytes} bytes");
    }

    private static void ValidateArray(string key, GgufArray a, int depth)
    {
        ArgumentNullException.ThrowIfNull(a.Items, $"metadata '{key}'");
        if (depth >= GgufFile.MaxArrayNesting) throw new ArgumentException($"metadata '{key}': arrays nested deeper than {GgufFile.MaxArrayNesting}");
        var expected = ClrType(a.ElementType);
        if (a.Items.GetType().GetElementType() != expected || a.Items.Rank != 1)
            throw new ArgumentException($"metadata '{key}': an array of {a.ElementType} must hold a {expected.Name}[], not a {a.Items.GetType().Name}");
        if (a.Items.Length > 1 << 30) throw new ArgumentException($"metadata '{key}': more than 2^30 array elements");
        if (a.Items is string[] ss) foreach (var s in ss) CheckString(key, s);
        if (a.Items is GgufArray[] aa) foreach (var x in aa) { ArgumentNullException.ThrowIfNull(x, $"metadata '{key}'"); ValidateArray(key, x, depth + 1); }
    }

    /// <summary>Write-through stream that counts bytes and writes little-endian scalars, strings and padding.</summary>
    private sealed class Output(Stream inner) : Stream
    {
        public long Written { get; private set; }
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => Written;
        public override long Position { get => Written; set => throw new NotSupportedException(); }
        public override void Flush() => inner.Flush();
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));
        public override void Write(ReadOnlySpan<byte> buffer) { inner.Write(buffer); Written += buffer.Length; }

        public void Bytes(ReadOnlySpan<byte> b) => Write(b);
        public void U32(uint v) { Span<byte> b = stackalloc byte[4]; BinaryPrimitives.WriteUInt32LittleEndian(b, v); Write(b); }
        public void U64(ulong v) { Span<byte> b = stackalloc byte[8]; BinaryPrimitives.WriteUInt64LittleEndian(b, v); Write(b); }
        public void Raw<T>(T v) where T : unmanaged => Write(MemoryMarshal.AsBytes(new ReadOnlySpan<T>(in v)));

        public void String(string s)
        {
            var n = Encoding.UTF8.GetByteCount(s);
            U64((ulong)n);
            if (n <= 256) { Span<byte> b = stackalloc byte[256]; Encoding.UTF8.GetBytes(s, b); Write(b[..n]); return; }
            var rented = ArrayPool<byte>.Shared.Rent(n);
            try { Encoding.UTF8.GetBytes(s, rented); Write(rented.AsSpan(0, n)); }
            finally { ArrayPool<byte>.Shared.Return(rented); }
        }

        public void Pad(int alignment)
        {
            Span<byte> zeros = stackalloc byte[256];
            zeros.Clear();
            var n = (int)(Pad(Written, alignment) - Written);
            while (n > 0) { var k = Math.Min(n, zeros.Length); Write(zeros[..k]); n -= k; }
        }

        private static long Pad(long n, long a) => (n + a - 1) / a * a;
    }
}
