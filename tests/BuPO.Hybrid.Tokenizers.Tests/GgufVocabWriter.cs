using System.Text;
using BuPO.Hybrid.Gguf;

namespace BuPO.Hybrid.Tokenizers.Tests;

/// <summary>
/// Writes metadata-only GGUF v3 files (a vocabulary without tensors), for tests: copies of a real vocabulary
/// with some keys changed, or tiny hand-made ones.
/// </summary>
internal static class GgufVocabWriter
{
    /// <summary>Writes <paramref name="metadata"/> (values typed as <see cref="GgufValue"/>) to <paramref name="path"/>.</summary>
    public static void Write(string path, IEnumerable<KeyValuePair<string, GgufValue>> metadata)
    {
        var kvs = metadata.ToList();
        using var stream = File.Create(path);
        using var w = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
        w.Write(0x46554747u); // "GGUF"
        w.Write(3u);
        w.Write(0UL); // tensors
        w.Write((ulong)kvs.Count);
        foreach (var (key, value) in kvs)
        {
            WriteString(w, key);
            w.Write((uint)value.Type);
            WriteValue(w, value.Type, value.Value);
        }
        var pad = (int)((GgufFile.DefaultAlignment - stream.Position % GgufFile.DefaultAlignment) % GgufFile.DefaultAlignment);
        w.Write(new byte[pad]);
    }

    /// <summary>Copies the metadata of <paramref name="source"/> with <paramref name="changes"/> applied (a null value removes the key).</summary>
    public static void WriteModified(string source, string path, IReadOnlyDictionary<string, GgufValue?> changes)
    {
        List<KeyValuePair<string, GgufValue>> kvs;
        using (var f = GgufFile.Open(source))
        {
            kvs = f.Metadata.Where(kv => !changes.ContainsKey(kv.Key)).ToList();
        }
        foreach (var (key, value) in changes)
            if (value != null) kvs.Add(new(key, value));
        Write(path, kvs);
    }

    public static GgufValue Str(string s) => new(GgufValueType.String, s);
    public static GgufValue U32(uint v) => new(GgufValueType.UInt32, v);
    public static GgufValue Bool(bool v) => new(GgufValueType.Bool, v);
    public static GgufValue Strings(params string[] items) => new(GgufValueType.Array, new GgufArray(GgufValueType.String, items));
    public static GgufValue Floats(params float[] items) => new(GgufValueType.Array, new GgufArray(GgufValueType.Float32, items));
    public static GgufValue Ints(params int[] items) => new(GgufValueType.Array, new GgufArray(GgufValueType.Int32, items));

    private static void WriteString(BinaryWriter w, string s)
    {
        var bytes = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    private static void WriteValue(BinaryWriter w, GgufValueType type, object value)
    {
        switch (type)
        {
            case GgufValueType.UInt8: w.Write((byte)value); break;
            case GgufValueType.Int8: w.Write((sbyte)value); break;
            case GgufValueType.UInt16: w.Write((ushort)value); break;
            case GgufValueType.Int16: w.Write((short)value); break;
            case GgufValueType.UInt32: w.Write((uint)value); break;
            case GgufValueType.Int32: w.Write((int)value); break;
            case GgufValueType.Float32: w.Write((float)value); break;
            case GgufValueType.Bool: w.Write((bool)value ? (byte)1 : (byte)0); break;
            case GgufValueType.String: WriteString(w, (string)value); break;
            case GgufValueType.UInt64: w.Write((ulong)value); break;
            case GgufValueType.Int64: w.Write((long)value); break;
            case GgufValueType.Float64: w.Write((double)value); break;
            case GgufValueType.Array:
                var arr = (GgufArray)value;
                w.Write((uint)arr.ElementType);
                w.Write((ulong)arr.Count);
                foreach (var item in arr.Items) WriteValue(w, arr.ElementType, item!);
                break;
            default: throw new ArgumentOutOfRangeException(nameof(type), type, "unknown GGUF value type");
        }
    }
}
