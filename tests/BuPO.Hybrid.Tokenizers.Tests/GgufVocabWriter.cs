using BuPO.Hybrid.Gguf;

namespace BuPO.Hybrid.Tokenizers.Tests;

/// <summary>
/// Metadata-only GGUF files (a vocabulary without tensors) for tests, through <see cref="GgufWriter"/>: copies of a
/// real vocabulary with some keys changed, or tiny hand-made ones.
/// </summary>
internal static class GgufVocabWriter
{
    /// <summary>Writes <paramref name="metadata"/>, in order, to <paramref name="path"/>.</summary>
    public static void Write(string path, IEnumerable<KeyValuePair<string, GgufValue>> metadata)
    {
        var w = new GgufWriter();
        foreach (var (key, value) in metadata) w.Set(key, value);
        w.WriteTo(path);
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
}
