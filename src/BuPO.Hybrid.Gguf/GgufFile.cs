using System.IO.MemoryMappedFiles;
using System.Text;

namespace BuPO.Hybrid.Gguf;

/// <summary>
/// A GGUF file (v2 or v3), memory-mapped and read-only. Every count, length, offset and dimension is checked
/// against the file before use, so a malformed file raises <see cref="GgufFormatException"/> naming the
/// field: never a crash, a hang, or an allocation larger than the file.
/// </summary>
public sealed unsafe class GgufFile : IDisposable
{
    /// <summary>The alignment used when the file does not set general.alignment.</summary>
    public const int DefaultAlignment = 32;
    private const int MaxDims = 4, MaxTensorNameBytes = 63, MaxArrayNesting = 8;

    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private byte* _base;
    private readonly Dictionary<string, GgufValue> _byKey;
    private readonly Dictionary<string, GgufTensorInfo> _byName;

    /// <summary>Path of the file.</summary>
    public string Path { get; }
    /// <summary>Format version (2 or 3).</summary>
    public uint Version { get; }
    /// <summary>File size in bytes.</summary>
    public long FileLength { get; }
    /// <summary>Tensor data alignment (general.alignment or 32).</summary>
    public int Alignment { get; }
    /// <summary>Absolute offset of the tensor data section.</summary>
    public long DataOffset { get; }
    /// <summary>Byte length of the header (before the padding to <see cref="DataOffset"/>).</summary>
    public long HeaderLength { get; }
    /// <summary>Metadata in file order.</summary>
    public IReadOnlyList<KeyValuePair<string, GgufValue>> Metadata { get; }
    /// <summary>Tensor infos in file order.</summary>
    public IReadOnlyList<GgufTensorInfo> Tensors { get; }

    private GgufFile(string path, long length, MemoryMappedFile? map, MemoryMappedViewAccessor? view, byte* basePtr)
    {
        Path = path; FileLength = length; _map = map; _view = view; _base = basePtr;
        var r = new Cursor(basePtr, length, path);
        if (length < 4 || r.Peek4() != 0x46554747u) throw r.Error("magic", "not a GGUF file (missing 'GGUF' magic)");
        r.Skip(4);
        Version = r.U32("version");
        if (Version == 1) throw r.Error("version", "GGUF v1 is not supported (convert the file with a current llama.cpp)");
        if (Version is not (2 or 3)) throw r.Error("version", $"unsupported GGUF version {Version}");
        var tensorCount = r.Count("tensor_count", 8 + 4 + 8 + 4 + 8); // smallest tensor info: name length, n_dims, one dim, type, offset
        var kvCount = r.Count("metadata_kv_count", 8 + 4 + 1);
        var kvs = new List<KeyValuePair<string, GgufValue>>((int)Math.Min(kvCount, 1 << 16));
        _byKey = new Dictionary<string, GgufValue>(StringComparer.Ordinal);
        for (long i = 0; i < kvCount; i++)
        {
            var key = r.String($"metadata key #{i}");
            var type = r.ValueType($"metadata '{key}' type");
            var value = r.Value(type, $"metadata '{key}'", 0);
            if (!_byKey.TryAdd(key, value)) throw r.Error($"metadata '{key}'", "duplicate key");
            kvs.Add(new(key, value));
        }
        Metadata = kvs;

        var alignment = DefaultAlignment;
        if (_byKey.TryGetValue("general.alignment", out var a))
        {
            if (a.Type != GgufValueType.UInt32) throw r.Error("general.alignment", $"must be uint32, found {a.Type}");
            var v = (uint)a.Value;
            if (v == 0 || (v & (v - 1)) != 0 || v > 1 << 20) throw r.Error("general.alignment", $"{v} is not a power of two");
            alignment = (int)v;
        }
        Alignment = alignment;

        var tensors = new List<GgufTensorInfo>((int)Math.Min(tensorCount, 1 << 16));
        _byName = new Dictionary<string, GgufTensorInfo>(StringComparer.Ordinal);
        for (long i = 0; i < tensorCount; i++)
        {
            var name = r.String($"tensor #{i} name");
            var field = $"tensor '{name}'";
            if (Encoding.UTF8.GetByteCount(name) > MaxTensorNameBytes) throw r.Error(field, "name longer than 63 bytes");
            var nDims = r.U32($"{field} n_dims");
            if (nDims == 0 || nDims > MaxDims) throw r.Error($"{field} n_dims", $"{nDims} is outside 1..{MaxDims}");
            var shape = new long[nDims];
            long elements = 1;
            for (var d = 0; d < nDims; d++)
            {
                var ne = r.I64($"{field} ne[{d}]");
                if (ne < 0) throw r.Error($"{field} ne[{d}]", $"negative dimension {ne}");
                shape[d] = ne;
                if (ne != 0 && elements > long.MaxValue / ne) throw r.Error($"{field} shape", "element count overflows");
                elements *= ne;
            }
            var rawType = r.U32($"{field} type");
            var type = (GgmlType)rawType;
            if (!GgmlTypeInfo.IsKnown(type)) throw r.Error($"{field} type", $"unknown ggml type {rawType}");
            var block = GgmlTypeInfo.BlockSize(type);
            if (shape[0] % block != 0) throw r.Error($"{field} ne[0]", $"{shape[0]} is not a multiple of {type}'s block size {block}");
            var blocks = elements / block;
            if (blocks > long.MaxValue / GgmlTypeInfo.BlockBytes(type)) throw r.Error($"{field} shape", "byte size overflows");
            var bytes = blocks * GgmlTypeInfo.BlockBytes(type);
            var offset = r.U64AsLong($"{field} offset");
            if (offset % alignment != 0) throw r.Error($"{field} offset", $"{offset} is not aligned to {alignment}");
            var info = new GgufTensorInfo(name, shape, type, offset, bytes);
            if (!_byName.TryAdd(name, info)) throw r.Error(field, "duplicate tensor name");
            tensors.Add(info);
        }
        Tensors = tensors;
        HeaderLength = r.Position;
        var dataOffset = (r.Position + alignment - 1) / alignment * alignment;
        if (tensorCount > 0 && dataOffset > length) throw r.Error("tensor data", "file ends before the tensor data section");
        DataOffset = dataOffset;
        foreach (var t in tensors)
            if (t.Offset > length - dataOffset || t.ByteSize > length - dataOffset - t.Offset)
                throw r.Error($"tensor '{t.Name}' data", $"{t.ByteSize} bytes at offset {t.Offset} run past the end of the file");
    }

    /// <summary>Opens and validates a GGUF file.</summary>
    /// <exception cref="GgufFormatException">The file is not a valid GGUF.</exception>
    /// <exception cref="BupoException">The file does not exist or cannot be read.</exception>
    public static GgufFile Open(string path)
    {
        var full = System.IO.Path.GetFullPath(path);
        if (Directory.Exists(full)) throw new BupoException($"{path}: is a directory, not a GGUF file");
        if (!File.Exists(full)) throw new BupoException($"{path}: file not found");
        long length;
        try { length = new FileInfo(full).Length; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new BupoException($"{path}: cannot read: {e.Message}"); }
        if (length < 24) throw new GgufFormatException($"{path}: not a GGUF file ({length} bytes is shorter than a GGUF header)");
        MemoryMappedFile? map = null;
        MemoryMappedViewAccessor? view = null;
        try
        {
            map = MemoryMappedFile.CreateFromFile(full, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
            view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            byte* ptr = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref ptr);
            ptr += view.PointerOffset;
            return new GgufFile(full, length, map, view, ptr);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            view?.Dispose(); map?.Dispose();
            throw new BupoException($"{path}: cannot read: {e.Message}");
        }
        catch
        {
            if (view != null) { view.SafeMemoryMappedViewHandle.ReleasePointer(); view.Dispose(); }
            map?.Dispose();
            throw;
        }
    }

    /// <summary>The value of a metadata key, or null.</summary>
    public GgufValue? Get(string key) => _byKey.GetValueOrDefault(key);

    /// <summary>True when the key exists.</summary>
    public bool Has(string key) => _byKey.ContainsKey(key);

    /// <summary>A string value, or null when absent.</summary>
    public string? GetString(string key) => _byKey.TryGetValue(key, out var v) ? Typed(key, () => v.AsString()) : null;

    /// <summary>An integer value, or null when absent.</summary>
    public long? GetInt(string key) => _byKey.TryGetValue(key, out var v) ? Typed(key, v.AsInt64) : null;

    /// <summary>A numeric value, or null when absent.</summary>
    public double? GetFloat(string key) => _byKey.TryGetValue(key, out var v) ? Typed(key, v.AsDouble) : null;

    /// <summary>A boolean value, or null when absent.</summary>
    public bool? GetBool(string key) => _byKey.TryGetValue(key, out var v) ? Typed(key, v.AsBool) : null;

    /// <summary>An array value, or null when absent.</summary>
    public GgufArray? GetArray(string key) => _byKey.TryGetValue(key, out var v) ? Typed(key, v.AsArray) : null;

    /// <summary>A required integer value; a missing or mistyped key is a <see cref="GgufFormatException"/>.</summary>
    public long RequireInt(string key) => GetInt(key) ?? throw new GgufFormatException($"{Path}: metadata '{key}' is missing");

    /// <summary>A required numeric value.</summary>
    public double RequireFloat(string key) => GetFloat(key) ?? throw new GgufFormatException($"{Path}: metadata '{key}' is missing");

    /// <summary>A required string value.</summary>
    public string RequireString(string key) => GetString(key) ?? throw new GgufFormatException($"{Path}: metadata '{key}' is missing");

    /// <summary>general.architecture, or null.</summary>
    public string? Architecture => GetString("general.architecture");

    /// <summary>The tensor with that name, or null.</summary>
    public GgufTensorInfo? FindTensor(string name) => _byName.GetValueOrDefault(name);

    /// <summary>The tensor with that name; a missing tensor is a <see cref="GgufFormatException"/>.</summary>
    public GgufTensorInfo GetTensor(string name) => FindTensor(name) ?? throw new GgufFormatException($"{Path}: tensor '{name}' is missing");

    /// <summary>The raw bytes of a tensor (valid until the file is disposed).</summary>
    public ReadOnlySpan<byte> GetTensorBytes(GgufTensorInfo tensor)
    {
        var p = TensorPointer(tensor);
        if (tensor.ByteSize > int.MaxValue) throw new NotSupportedException($"tensor '{tensor.Name}' is larger than 2 GiB: read it in rows with GetTensorRowBytes");
        return new ReadOnlySpan<byte>(p, (int)tensor.ByteSize);
    }

    /// <summary>The raw bytes of rows [firstRow, firstRow+rowCount) of a tensor viewed as [Rows x Columns].</summary>
    public ReadOnlySpan<byte> GetTensorRowBytes(GgufTensorInfo tensor, long firstRow, int rowCount)
    {
        var rowBytes = GgmlTypeInfo.RowBytes(tensor.Type, tensor.Columns);
        if (firstRow < 0 || rowCount < 0 || firstRow + rowCount > tensor.Rows) throw new ArgumentOutOfRangeException(nameof(firstRow));
        var len = rowBytes * rowCount;
        if (len > int.MaxValue) throw new ArgumentOutOfRangeException(nameof(rowCount), "more than 2 GiB of rows at once");
        return new ReadOnlySpan<byte>(TensorPointer(tensor) + firstRow * rowBytes, (int)len);
    }

    /// <summary>The whole tensor dequantized to float32 (row-major, Shape[0] contiguous).</summary>
    public float[] ReadTensorFloat(GgufTensorInfo tensor)
    {
        var n = tensor.ElementCount;
        if (n > Array.MaxLength) throw new NotSupportedException($"tensor '{tensor.Name}' has {n} elements, more than one array holds");
        var result = new float[n];
        var rowBytes = GgmlTypeInfo.RowBytes(tensor.Type, tensor.Columns);
        var rows = tensor.Rows;
        if (tensor.Columns == 0 || rows == 0) return result;
        var rowsPerChunk = (int)Math.Max(1, Math.Min(rows, (1L << 28) / Math.Max(1, rowBytes)));
        for (long r = 0; r < rows; r += rowsPerChunk)
        {
            var count = (int)Math.Min(rowsPerChunk, rows - r);
            GgmlDequantizer.Dequantize(tensor.Type, GetTensorRowBytes(tensor, r, count), result.AsSpan().Slice((int)(r * tensor.Columns), (int)(count * tensor.Columns)));
        }
        return result;
    }

    /// <summary>The tensor with that name dequantized to float32.</summary>
    public float[] ReadTensorFloat(string name) => ReadTensorFloat(GetTensor(name));

    private byte* TensorPointer(GgufTensorInfo tensor)
    {
        ObjectDisposedException.ThrowIf(_base == null, this);
        if (!_byName.TryGetValue(tensor.Name, out var own) || !ReferenceEquals(own, tensor) && own != tensor)
            throw new ArgumentException($"tensor '{tensor.Name}' is not from {Path}");
        return _base + DataOffset + tensor.Offset;
    }

    private T Typed<T>(string key, Func<T> get)
    {
        try { return get(); }
        catch (Exception e) when (e is InvalidCastException or OverflowException) { throw new GgufFormatException($"{Path}: metadata '{key}': {e.Message}"); }
    }

    public void Dispose()
    {
        if (_base == null) return;
        _base = null;
        _view?.SafeMemoryMappedViewHandle.ReleasePointer();
        _view?.Dispose();
        _map?.Dispose();
    }

    /// <summary>Bounds-checked reader over the mapped header.</summary>
    private struct Cursor(byte* start, long length, string path)
    {
        private long _pos;
        public readonly long Position => _pos;
        private readonly long Remaining => length - _pos;

        public readonly GgufFormatException Error(string field, string what) => new($"{path}: {field}: {what} (at byte {_pos})");

        private readonly void Need(long n, string field)
        {
            if (n < 0 || n > Remaining) throw Error(field, $"file is truncated (needs {n} more bytes, {Remaining} left)");
        }

        public readonly uint Peek4() => *(uint*)start;
        public void Skip(long n) => _pos += n;

        public uint U32(string field) { Need(4, field); var v = *(uint*)(start + _pos); _pos += 4; return v; }
        public ulong U64(string field) { Need(8, field); var v = *(ulong*)(start + _pos); _pos += 8; return v; }
        public long I64(string field) => (long)U64(field);

        public long U64AsLong(string field)
        {
            var v = U64(field);
            if (v > long.MaxValue) throw Error(field, $"value {v} is too large");
            return (long)v;
        }

        /// <summary>A count of items that each take at least <paramref name="minItemBytes"/> bytes of what remains.</summary>
        public long Count(string field, int minItemBytes)
        {
            var v = U64(field);
            if (v > (ulong)(Remaining / minItemBytes)) throw Error(field, $"count {v} cannot fit in the {Remaining} bytes left");
            return (long)v;
        }

        public GgufValueType ValueType(string field)
        {
            var t = U32(field);
            if (t > (uint)GgufValueType.Float64) throw Error(field, $"unknown value type {t}");
            return (GgufValueType)t;
        }

        public string String(string field)
        {
            var len = U64(field + " length");
            if (len > (ulong)Remaining) throw Error(field, $"string length {len} runs past the end of the file");
            var s = Encoding.UTF8.GetString(start + _pos, (int)Math.Min(len, int.MaxValue));
            if (len > int.MaxValue) throw Error(field, "string longer than 2 GiB");
            _pos += (long)len;
            return s;
        }

        public GgufValue Value(GgufValueType type, string field, int depth) => new(type, type switch
        {
            GgufValueType.UInt8 => (object)Read<byte>(field),
            GgufValueType.Int8 => Read<sbyte>(field),
            GgufValueType.UInt16 => Read<ushort>(field),
            GgufValueType.Int16 => Read<short>(field),
            GgufValueType.UInt32 => Read<uint>(field),
            GgufValueType.Int32 => Read<int>(field),
            GgufValueType.Float32 => Read<float>(field),
            GgufValueType.Bool => ReadBool(field),
            GgufValueType.String => String(field),
            GgufValueType.UInt64 => Read<ulong>(field),
            GgufValueType.Int64 => Read<long>(field),
            GgufValueType.Float64 => Read<double>(field),
            GgufValueType.Array => Array(field, depth),
            _ => throw Error(field, $"unknown value type {(uint)type}"),
        });

        private T Read<T>(string field) where T : unmanaged
        {
            Need(sizeof(T), field);
            var v = *(T*)(start + _pos);
            _pos += sizeof(T);
            return v;
        }

        private bool ReadBool(string field)
        {
            var b = Read<byte>(field);
            if (b > 1) throw Error(field, $"invalid bool value {b}");
            return b == 1;
        }

        private GgufArray Array(string field, int depth)
        {
            if (depth >= MaxArrayNesting) throw Error(field, $"arrays nested deeper than {MaxArrayNesting}");
            var elementType = ValueType(field + " element type");
            var minBytes = elementType switch
            {
                GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
                GgufValueType.UInt16 or GgufValueType.Int16 => 2,
                GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
                GgufValueType.String or GgufValueType.UInt64 or GgufValueType.Int64 or GgufValueType.Float64 => 8,
                _ => 12, // nested array: element type + count
            };
            var n = (int)Math.Min(Count(field + " count", minBytes), int.MaxValue);
            System.Array items = elementType switch
            {
                GgufValueType.UInt8 => Block<byte>(n, field),
                GgufValueType.Int8 => Block<sbyte>(n, field),
                GgufValueType.UInt16 => Block<ushort>(n, field),
                GgufValueType.Int16 => Block<short>(n, field),
                GgufValueType.UInt32 => Block<uint>(n, field),
                GgufValueType.Int32 => Block<int>(n, field),
                GgufValueType.Float32 => Block<float>(n, field),
                GgufValueType.UInt64 => Block<ulong>(n, field),
                GgufValueType.Int64 => Block<long>(n, field),
                GgufValueType.Float64 => Block<double>(n, field),
                GgufValueType.Bool => Bools(n, field),
                GgufValueType.String => Strings(n, field),
                _ => Arrays(n, field, depth),
            };
            return new GgufArray(elementType, items);
        }

        private T[] Block<T>(int n, string field) where T : unmanaged
        {
            Need((long)n * sizeof(T), field);
            var arr = new T[n];
            new ReadOnlySpan<T>(start + _pos, n).CopyTo(arr);
            _pos += (long)n * sizeof(T);
            return arr;
        }

        private bool[] Bools(int n, string field)
        {
            var arr = new bool[n];
            for (var i = 0; i < n; i++) arr[i] = ReadBool($"{field}[{i}]");
            return arr;
        }

        private string[] Strings(int n, string field)
        {
            var arr = new string[n];
            for (var i = 0; i < n; i++) arr[i] = String($"{field}[{i}]");
            return arr;
        }

        private GgufArray[] Arrays(int n, string field, int depth)
        {
            var arr = new GgufArray[n];
            for (var i = 0; i < n; i++) arr[i] = Array($"{field}[{i}]", depth + 1);
            return arr;
        }
    }
}
