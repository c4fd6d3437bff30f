using System.Text;

namespace BuPO.Hybrid.Llama.Tests;

/// <summary>A minimal GGUF v3 writer for test files (string/uint32/float32 metadata, F32 tensors).</summary>
public sealed class TestGgufWriter
{
    private readonly List<(string Key, object Value)> _kv = [];
    private readonly List<(string Name, long[] Shape, float[] Data)> _tensors = [];

    public TestGgufWriter Add(string key, object value) { _kv.Add((key, value)); return this; }

    /// <summary>Adds an F32 tensor; <paramref name="shape"/> is ggml's ne (ne[0] = row length).</summary>
    public TestGgufWriter AddTensor(string name, long[] shape, float[] data)
    {
        if (shape.Aggregate(1L, (a, b) => a * b) != data.Length) throw new ArgumentException("shape/data mismatch");
        _tensors.Add((name, shape, data));
        return this;
    }

    public void Write(string path)
    {
        using var w = new BinaryWriter(File.Create(path));
        w.Write("GGUF"u8);
        w.Write(3u);
        w.Write((ulong)_tensors.Count);
        w.Write((ulong)_kv.Count);
        foreach (var (key, value) in _kv)
        {
            Str(w, key);
            switch (value)
            {
                case uint u: w.Write(4u); w.Write(u); break;
                case float f: w.Write(6u); w.Write(f); break;
                case string s: w.Write(8u); Str(w, s); break;
                default: throw new NotSupportedException(value.GetType().Name);
            }
        }
        long offset = 0;
        var offsets = new List<long>();
        foreach (var (name, shape, data) in _tensors)
        {
            Str(w, name);
            w.Write((uint)shape.Length);
            foreach (var ne in shape) w.Write((ulong)ne);
            w.Write(0u); // F32
            w.Write((ulong)offset);
            offsets.Add(offset);
            offset += Align(data.Length * 4L);
        }
        Pad(w);
        long start = w.BaseStream.Position;
        for (int i = 0; i < _tensors.Count; i++)
        {
            while (w.BaseStream.Position < start + offsets[i]) w.Write((byte)0);
            foreach (var v in _tensors[i].Data) w.Write(v);
        }
        Pad(w);
    }

    private static long Align(long n) => (n + 31) / 32 * 32;

    private static void Pad(BinaryWriter w)
    {
        while (w.BaseStream.Position % 32 != 0) w.Write((byte)0);
    }

    private static void Str(BinaryWriter w, string s)
    {
        var b = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)b.Length);
        w.Write(b);
    }
}
