using System.Globalization;
using System.IO.MemoryMappedFiles;
using System.Text;

namespace BuPO.Hybrid.Gguf;

/// <summary>
/// A GGUF file (v2 or v3), memory-mapped and read-only. Every count, length, offset and dimension is checked
/// against the file before use, so a malformed file raises <see cref="GgufFormatException"/> naming the
/// field: never a crash or a hang. The header is parsed twice: a validation pass that allocates nothing per
/// item (a malformed file costs only the exception), then a pass that builds the metadata and tensor
/// tables. A valid header costs a few times its own size in .NET objects (UTF-16 strings, boxes,
/// dictionaries: 2.5x for the 6 MB qwen2 vocab; the fuzz test asserts at most 12x + 64 KiB), never anything
/// sized by an unchecked count. Tensor offsets must be packed in order, as gguf.cpp requires.
/// </summary>
public sealed unsafe class GgufFile : IDisposable
{
    /// <summary>The alignment used when the file does not set general.alignment.</summary>
    public const int DefaultAlignment = 32;
    /// <summary>Most bytes a tensor name may have (GGML_MAX_NAME - 1).</summary>
    public const int MaxTensorNameBytes = 63;
    /// <summary>Deepest array nesting accepted (an array of arrays is depth 2).</summary>
    public const int MaxArrayNesting = 8;
    /// <summary>Longest string accepted, in bytes (gguf.cpp's 1 GiB, capped at what a .NET string holds).</summary>
    public const long MaxStringBytes = 0x3FFFFFDF;
    private const int MaxDims = 4, MaxItems = 1 << 28;

    /// <summary>
    /// Files up to this size are read into memory instead of mapped: an outside rewrite or truncation of a mapped file
    /// turns the next read of a lost page into SIGBUS, which no handler can turn into an error. Bigger files stay mapped.
    /// </summary>
    public const long InMemoryThreshold = 512L << 20;

    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private readonly NativeBuffer? _memory;
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

    private GgufFile(string path, long length, MemoryMappedFile? map, MemoryMappedViewAccessor? view, byte* basePtr, NativeBuffer? memory = null)
    {
        Path = path; FileLength = length; _map = map; _view = view; _base = basePtr; _memory = memory;
        var r = new Cursor(basePtr, length, path);
        if (length < 4 || r.Peek4() != 0x46554747u) throw r.Error(new Field("magic"), "not a GGUF file (missing 'GGUF' magic)");
        r.Skip(4);
        Version = r.U32(new Field("version"));
        if (Version == 1) throw r.Error(new Field("version"), "GGUF v1 is not supported (convert the file with a current llama.cpp)");
        if (Version is not (2 or 3)) throw r.Error(new Field("version"), $"unsupported GGUF version {Version}");
        // smallest tensor info: name length, n_dims, one dim, type, offset; smallest kv: key length, 1-byte key, type, 1-byte value
        var tensorCount = r.Count(new Field("tensor_count"), 8 + 4 + 8 + 4 + 8);
        var kvCount = r.Count(new Field("metadata_kv_count"), 8 + 1 + 4 + 1);
        if (tensorCount > MaxItems) throw r.Error(new Field("tensor_count"), $"{tensorCount} tensors is more than the {MaxItems} supported");
        if (kvCount > MaxItems) throw r.Error(new Field("metadata_kv_count"), $"{kvCount} keys is more than the {MaxItems} supported");
        var bodyStart = r;

        // Pass 1: validate the whole header without allocating per item.
        Alignment = ValidateMetadata(ref r, kvCount);
        ValidateTensorInfos(ref r, tensorCount, Alignment, out var dataBytes);
        HeaderLength = r.Position;
        DataOffset = (r.Position + Alignment - 1) / Alignment * Alignment;
        if (tensorCount > 0 && (DataOffset > length || dataBytes > length - DataOffset))
            throw r.Error(new Field("tensor data"), $"{dataBytes} bytes of tensor data at offset {DataOffset} run past the end of the {length}-byte file");

        // Pass 2: build the tables (the structure is known to be sound).
        r = bodyStart;
        var kvs = new List<KeyValuePair<string, GgufValue>>((int)kvCount);
        _byKey = new Dictionary<string, GgufValue>((int)kvCount, StringComparer.Ordinal);
        for (long i = 0; i < kvCount; i++)
        {
            var f = Field.Meta(i);
            var (kpos, klen) = r.StringSpan(f.With("key"));
            f = f.Named(kpos, klen);
            var key = r.Decode(kpos, klen);
            var value = r.ReadValue(r.ValueType(f.With("type")), f, 0);
            if (!_byKey.TryAdd(key, value)) throw r.Error(f, "duplicate key");
            kvs.Add(new(key, value));
        }
        Metadata = kvs;

        var tensors = new List<GgufTensorInfo>((int)tensorCount);
        _byName = new Dictionary<string, GgufTensorInfo>((int)tensorCount, StringComparer.Ordinal);
        for (long i = 0; i < tensorCount; i++)
        {
            var f = Field.Tensor(i);
            var (npos, nlen) = r.StringSpan(f.With("name"));
            f = f.Named(npos, nlen);
            var name = r.Decode(npos, nlen);
            var nDims = r.U32(f.With("n_dims"));
            var shape = new long[nDims];
            for (var d = 0; d < nDims; d++) shape[d] = (long)r.U64(f.With("ne", d));
            var type = (GgmlType)r.U32(f.With("type"));
            var offset = (long)r.U64(f.With("offset"));
            var info = new GgufTensorInfo(name, shape, type, offset, TensorBytes(shape, type));
            if (!_byName.TryAdd(name, info)) throw r.Error(f, "duplicate tensor name");
            tensors.Add(info);
        }
        Tensors = tensors;
    }

    private static long Pad(long n, long alignment) => (n + alignment - 1) / alignment * alignment;

    private static long TensorBytes(long[] shape, GgmlType type)
    {
        long elements = 1;
        foreach (var ne in shape) elements *= ne;
        return elements / GgmlTypeInfo.BlockSize(type) * GgmlTypeInfo.BlockBytes(type);
    }

    /// <summary>Pass 1 over the key/value pairs; returns the alignment (general.alignment or the default).</summary>
    private static int ValidateMetadata(ref Cursor r, long kvCount)
    {
        long alignmentAt = -1;
        Field alignmentField = default;
        for (long i = 0; i < kvCount; i++)
        {
            var f = Field.Meta(i);
            var (kpos, klen) = r.StringSpan(f.With("key"));
            if (klen == 0) throw r.Error(f.With("key"), "empty key");
            f = f.Named(kpos, klen);
            var type = r.ValueType(f.With("type"));
            if (alignmentAt < 0 && r.BytesEqual(kpos, klen, "general.alignment"u8))
            {
                if (type != GgufValueType.UInt32) throw r.Error(f, $"must be uint32, found {type}");
                alignmentAt = r.Position;
                alignmentField = f;
            }
            r.SkipValue(type, f, 0);
        }
        if (alignmentAt < 0) return DefaultAlignment;
        var v = r.U32At(alignmentAt);
        if (v == 0 || (v & (v - 1)) != 0 || v > 1 << 20) throw r.Error(alignmentField, $"{v} is not a power of two up to 2^20");
        return (int)v;
    }

    /// <summary>Pass 1 over the tensor infos: shapes, types, sizes, and offsets packed in order as gguf.cpp requires.</summary>
    private static void ValidateTensorInfos(ref Cursor r, long tensorCount, int alignment, out long dataBytes)
    {
        long expectedOffset = 0, end = 0;
        for (long i = 0; i < tensorCount; i++)
        {
            var f = Field.Tensor(i);
            var (npos, nlen) = r.StringSpan(f.With("name"));
            f = f.Named(npos, nlen);
            if (nlen > MaxTensorNameBytes) throw r.Error(f, $"name is {nlen} bytes, longer than {MaxTensorNameBytes}");
            var nDims = r.U32(f.With("n_dims"));
            if (nDims == 0 || nDims > MaxDims) throw r.Error(f.With("n_dims"), $"{nDims} is outside 1..{MaxDims}");
            long elements = 1, ne0 = 0;
            for (var d = 0; d < nDims; d++)
            {
                var ne = (long)r.U64(f.With("ne", d));
                if (ne < 0) throw r.Error(f.With("ne", d), $"negative dimension {ne}");
                if (d == 0) ne0 = ne;
                if (ne != 0 && elements > long.MaxValue / ne) throw r.Error(f.With("shape"), "element count overflows");
                elements *= ne;
            }
            var rawType = r.U32(f.With("type"));
            var type = (GgmlType)rawType;
            if (!GgmlTypeInfo.IsKnown(type)) throw r.Error(f.With("type"), $"unknown ggml type {rawType}");
            var block = GgmlTypeInfo.BlockSize(type);
            if (ne0 % block != 0) throw r.Error(f.With("ne", 0), $"{ne0} is not a multiple of {type}'s block size {block}");
            var blocks = elements / block;
            if (blocks > (long.MaxValue - alignment) / GgmlTypeInfo.BlockBytes(type)) throw r.Error(f.With("shape"), "byte size overflows");
            var bytes = blocks * GgmlTypeInfo.BlockBytes(type);
            var offset = r.U64(f.With("offset"));
            if (offset != (ulong)expectedOffset)
                throw r.Error(f.With("offset"), $"{offset}, expected {expectedOffset} (tensor data must be packed in order, each padded to {alignment})");
            var padded = Pad(bytes, alignment);
            if (padded > long.MaxValue - expectedOffset) throw r.Error(f.With("offset"), "data section size overflows");
            end = expectedOffset + bytes;
            expectedOffset += padded;
        }
        dataBytes = end;
    }

    /// <exception cref="GgufFormatException">The file is not a valid GGUF.</exception>
    /// <exception cref="BupoException">The file does not exist or cannot be read.</exception>
    public static GgufFile Open(string path) => Open(path, readSmallFiles: true);

    /// <summary>Maps the file whatever its size: for reading the header only (a check), where copying a small file would cost more than its header.</summary>
    internal static GgufFile OpenMapped(string path) => Open(path, readSmallFiles: false);

    private static GgufFile Open(string path, bool readSmallFiles)
    {
        var full = System.IO.Path.GetFullPath(path);
        if (Directory.Exists(full)) throw new BupoException($"{path}: is a directory, not a GGUF file");
        if (!File.Exists(full)) throw new BupoException($"{path}: file not found");
        long length;
        try { length = new FileInfo(full).Length; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new BupoException($"{path}: cannot read: {e.Message}"); }
        if (length < 24) throw new GgufFormatException($"{path}: not a GGUF file ({length} bytes is shorter than a GGUF header)");
        if (readSmallFiles && length <= InMemoryThreshold) return OpenInMemory(path, full, length);
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

    private static GgufFile OpenInMemory(string path, string full, long length)
    {
        var memory = new NativeBuffer(length);
        try
        {
            var mem = (byte*)memory.DangerousGetHandle();
            using (var handle = File.OpenHandle(full, FileMode.Open, FileAccess.Read, FileShare.Read))
            {
                long done = 0;
                while (done < length)
                {
                    var n = RandomAccess.Read(handle, new Span<byte>(mem + done, (int)Math.Min(length - done, 1 << 30)), done);
                    if (n <= 0) throw new BupoException($"{path}: the file shrank while it was read ({done} of {length} bytes)");
                    done += n;
                }
            }
            return new GgufFile(full, length, null, null, mem, memory);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            memory.Dispose();
            throw new BupoException($"{path}: cannot read: {e.Message}");
        }
        catch
        {
            memory.Dispose();
            throw;
        }
    }

    /// <summary>Native memory holding a whole file (freed by Dispose, or by the finalizer of a lost GgufFile).</summary>
    private sealed class NativeBuffer : System.Runtime.InteropServices.SafeHandle
    {
        public NativeBuffer(long length) : base(0, ownsHandle: true) =>
            SetHandle((nint)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)Math.Max(length, 1), 64));

        public override bool IsInvalid => handle == 0;

        protected override bool ReleaseHandle()
        {
            System.Runtime.InteropServices.NativeMemory.AlignedFree((void*)handle);
            return true;
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
        _memory?.Dispose();
        _view?.SafeMemoryMappedViewHandle.ReleasePointer();
        _view?.Dispose();
        _map?.Dispose();
    }


    /// <summary>
    /// Names the header field being read, for error messages. A struct of constants and positions, so
    /// naming a field costs nothing; the text is built only when an error is thrown.
    /// </summary>
    private readonly struct Field
    {
        private readonly string? _plain;
        private readonly bool _tensor;
        private readonly long _index, _namePos, _nameLen, _elem, _partIndex;
        private readonly string? _part;

        public Field(string plain) : this(plain, false, -1) { }

        private Field(string? plain, bool tensor, long index)
        {
            _plain = plain; _tensor = tensor; _index = index;
            _namePos = _nameLen = _elem = _partIndex = -1;
        }

        private Field(in Field f, long namePos, long nameLen, long elem, string? part, long partIndex)
        {
            _plain = f._plain; _tensor = f._tensor; _index = f._index;
            _namePos = namePos; _nameLen = nameLen; _elem = elem; _part = part; _partIndex = partIndex;
        }

        public static Field Meta(long index) => new(null, false, index);
        public static Field Tensor(long index) => new(null, true, index);
        public Field Named(long pos, long len) => new(this, pos, len, -1, null, -1);
        public Field With(string part, long index = -1) => new(this, _namePos, _nameLen, _elem, part, index);
        public Field At(long elem) => new(this, _namePos, _nameLen, elem, null, -1);

        public string Describe(byte* start)
        {
            if (_plain != null) return _plain;
            var sb = new StringBuilder(_tensor ? "tensor " : "metadata ");
            if (_namePos < 0) sb.Append(_tensor ? "#" : "key #").Append(_index);
            else
            {
                const int shown = 80;
                var n = (int)Math.Min(_nameLen, shown);
                sb.Append('\'');
                foreach (var c in Encoding.UTF8.GetString(start + _namePos, n))
                    if (char.IsControl(c)) sb.Append(CultureInfo.InvariantCulture, $"\\x{(int)c:X2}"); else sb.Append(c); // keep the message on one line
                sb.Append(_nameLen > shown ? "...'" : "'");
            }
            if (_elem >= 0) sb.Append('[').Append(_elem).Append(']');
            if (_part != null) sb.Append(' ').Append(_part);
            if (_partIndex >= 0) sb.Append('[').Append(_partIndex).Append(']');
            return sb.ToString();
        }
    }

    /// <summary>Bounds-checked reader over the mapped header.</summary>
    private struct Cursor(byte* start, long length, string path)
    {
        private const long MaxArrayElements = 1L << 30; // GGUF_MAX_ARRAY_ELEMENTS
        private long _pos;
        public readonly long Position => _pos;
        private readonly long Remaining => length - _pos;

        public readonly GgufFormatException Error(in Field field, string what) => new($"{path}: {field.Describe(start)}: {what} (at byte {_pos})");

        private readonly void Need(long n, in Field field)
        {
            if (n < 0 || n > Remaining) throw Error(field, $"file is truncated (needs {n} more bytes, {Remaining} left)");
        }

        public readonly uint Peek4() => *(uint*)start;
        public void Skip(long n) => _pos += n;

        public uint U32(in Field field) { Need(4, field); var v = *(uint*)(start + _pos); _pos += 4; return v; }
        public ulong U64(in Field field) { Need(8, field); var v = *(ulong*)(start + _pos); _pos += 8; return v; }
        public readonly uint U32At(long pos) => *(uint*)(start + pos);

        /// <summary>A count of items that each take at least <paramref name="minItemBytes"/> bytes of what remains.</summary>
        public long Count(in Field field, int minItemBytes)
        {
            var v = U64(field);
            if (v > (ulong)(Remaining / minItemBytes)) throw Error(field, $"count {v} cannot fit in the {Remaining} bytes left");
            return (long)v;
        }

        public GgufValueType ValueType(in Field field)
        {
            var t = U32(field);
            if (t > (uint)GgufValueType.Float64) throw Error(field, $"unknown value type {t}");
            return (GgufValueType)t;
        }

        /// <summary>Reads a string's length and skips its bytes; returns where they are.</summary>
        public (long Pos, long Len) StringSpan(in Field field)
        {
            var len = U64(field.With("length"));
            if (len > (ulong)Remaining) throw Error(field, $"string length {len} runs past the end of the file");
            if (len > MaxStringBytes) throw Error(field, $"string length {len} exceeds the maximum {MaxStringBytes}");
            var pos = _pos;
            _pos += (long)len;
            return (pos, (long)len);
        }

        public readonly string Decode(long pos, long len) => len == 0 ? "" : Encoding.UTF8.GetString(start + pos, (int)len);

        public readonly bool BytesEqual(long pos, long len, ReadOnlySpan<byte> expected) =>
            len == expected.Length && new ReadOnlySpan<byte>(start + pos, (int)len).SequenceEqual(expected);

        private static int FixedSize(GgufValueType t) => t switch
        {
            GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
            GgufValueType.UInt16 or GgufValueType.Int16 => 2,
            GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
            GgufValueType.UInt64 or GgufValueType.Int64 or GgufValueType.Float64 => 8,
            _ => 0,
        };

        /// <summary>Smallest encoding of one array element of that type.</summary>
        private static int MinBytes(GgufValueType t) => t switch
        {
            GgufValueType.String => 8,
            GgufValueType.Array => 12, // element type + count
            _ => FixedSize(t),
        };

        // ---- pass 1: validate and skip, allocating nothing ----

        public void SkipValue(GgufValueType type, in Field field, int depth)
        {
            switch (type)
            {
                case GgufValueType.Bool: ReadBool(field); break;
                case GgufValueType.String: StringSpan(field); break;
                case GgufValueType.Array: SkipArray(field, depth); break;
                default: var n = FixedSize(type); Need(n, field); _pos += n; break;
            }
        }

        private (GgufValueType Type, long Count) ArrayHeader(in Field field, int depth)
        {
            if (depth >= MaxArrayNesting) throw Error(field, $"arrays nested deeper than {MaxArrayNesting}");
            var elementType = ValueType(field.With("element type"));
            var n = Count(field.With("count"), MinBytes(elementType));
            if (n > MaxArrayElements) throw Error(field.With("count"), $"{n} elements exceeds the maximum {MaxArrayElements}");
            return (elementType, n);
        }

        private void SkipArray(in Field field, int depth)
        {
            var (et, n) = ArrayHeader(field, depth);
            switch (et)
            {
                case GgufValueType.Bool: for (long i = 0; i < n; i++) ReadBool(field.At(i)); break;
                case GgufValueType.String: for (long i = 0; i < n; i++) StringSpan(field.At(i)); break;
                case GgufValueType.Array: for (long i = 0; i < n; i++) SkipArray(field.At(i), depth + 1); break;
                default: var bytes = n * FixedSize(et); Need(bytes, field); _pos += bytes; break;
            }
        }

        private bool ReadBool(in Field field)
        {
            Need(1, field);
            var b = start[_pos];
            if (b > 1) throw Error(field, $"invalid bool value {b}");
            _pos++;
            return b == 1;
        }

        // ---- pass 2: build values (the structure was validated by pass 1) ----

        public GgufValue ReadValue(GgufValueType type, in Field field, int depth) => new(type, type switch
        {
            GgufValueType.UInt8 => (object)Read<byte>(field),
            GgufValueType.Int8 => Read<sbyte>(field),
            GgufValueType.UInt16 => Read<ushort>(field),
            GgufValueType.Int16 => Read<short>(field),
            GgufValueType.UInt32 => Read<uint>(field),
            GgufValueType.Int32 => Read<int>(field),
            GgufValueType.Float32 => Read<float>(field),
            GgufValueType.Bool => ReadBool(field),
            GgufValueType.String => ReadString(field),
            GgufValueType.UInt64 => Read<ulong>(field),
            GgufValueType.Int64 => Read<long>(field),
            GgufValueType.Float64 => Read<double>(field),
            _ => ReadArray(field, depth),
        });

        private string ReadString(in Field field)
        {
            var (pos, len) = StringSpan(field);
            return Decode(pos, len);
        }

        private T Read<T>(in Field field) where T : unmanaged
        {
            Need(sizeof(T), field);
            var v = *(T*)(start + _pos);
            _pos += sizeof(T);
            return v;
        }

        private GgufArray ReadArray(in Field field, int depth)
        {
            var (et, count) = ArrayHeader(field, depth);
            var n = (int)count;
            System.Array items = et switch
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
            return new GgufArray(et, items);
        }

        private T[] Block<T>(int n, in Field field) where T : unmanaged
        {
            Need((long)n * sizeof(T), field);
            if (n == 0) return [];
            var arr = new T[n];
            new ReadOnlySpan<T>(start + _pos, n).CopyTo(arr);
            _pos += (long)n * sizeof(T);
            return arr;
        }

        private bool[] Bools(int n, in Field field)
        {
            if (n == 0) return [];
            var arr = new bool[n];
            for (var i = 0; i < n; i++) arr[i] = ReadBool(field.At(i));
            return arr;
        }

        private string[] Strings(int n, in Field field)
        {
            if (n == 0) return [];
            var arr = new string[n];
            for (var i = 0; i < n; i++) arr[i] = ReadString(field.At(i));
            return arr;
        }

        private GgufArray[] Arrays(int n, in Field field, int depth)
        {
            if (n == 0) return [];
            var arr = new GgufArray[n];
            for (var i = 0; i < n; i++) arr[i] = ReadArray(field.At(i), depth + 1);
            return arr;
        }
    }
}
