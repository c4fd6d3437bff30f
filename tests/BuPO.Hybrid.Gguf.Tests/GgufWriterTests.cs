using BuPO.Hybrid.Tests.Support;

namespace BuPO.Hybrid.Gguf.Tests;

public class GgufWriterTests
{
    private static void AssertFilesIdentical(string expected, string actual)
    {
        var a = File.ReadAllBytes(expected);
        var b = File.ReadAllBytes(actual);
        Assert.True(a.Length == b.Length, $"length {b.Length}, expected {a.Length}");
        var i = a.AsSpan().CommonPrefixLength(b);
        Assert.True(i == a.Length, $"first difference at byte {i}");
    }

    /// <summary>Files written by llama.cpp's converters (stories260K, the Qwen2 vocabulary; skipped without ../shared)
    /// and a random model of stories260K's shape written by <see cref="RandomGgufModel"/>.</summary>
    [Theory]
    [InlineData("stories")]
    [InlineData("qwen2-vocab")]
    [InlineData("random-stories-shape")]
    public void ReadWriteReadIsByteIdentical(string which)
    {
        using var tmp = new TempDir();
        var src = which switch
        {
            "stories" => SharedAssets.RequireFile(SharedAssets.StoriesModel),
            "qwen2-vocab" => SharedAssets.RequireFile(SharedAssets.Qwen2Vocab),
            _ => RandomTestModels.StoriesShaped(tmp.File("model")),
        };
        var dst = tmp.File("copy.gguf");
        using (var f = GgufFile.Open(src))
        {
            var w = GgufWriter.FromFile(f);
            Assert.Equal(new FileInfo(src).Length, w.ComputeFileSize());
            w.WriteTo(dst);
        }
        AssertFilesIdentical(src, dst);
        using var g = GgufFile.Open(dst);
        Assert.NotEmpty(g.Metadata);
    }

    private static GgufWriter AllValueTypes()
    {
        var w = new GgufWriter();
        w.Set("u8", GgufValue.Of((byte)250));
        w.Set("i8", GgufValue.Of((sbyte)-100));
        w.Set("u16", GgufValue.Of((ushort)65000));
        w.Set("i16", GgufValue.Of((short)-32000));
        w.Set("u32", GgufValue.Of(4_000_000_000u));
        w.Set("i32", GgufValue.Of(-2_000_000_000));
        w.Set("f32", GgufValue.Of(3.25f));
        w.Set("bool.true", GgufValue.Of(true));
        w.Set("bool.false", GgufValue.Of(false));
        w.Set("str", GgufValue.Of("héllo wörld ✓ 🙂"));
        w.Set("str.empty", GgufValue.Of(""));
        w.Set("u64", GgufValue.Of(ulong.MaxValue));
        w.Set("i64", GgufValue.Of(long.MinValue));
        w.Set("f64", GgufValue.Of(Math.PI));
        w.Set("f32.nan", GgufValue.Of(BitConverter.UInt32BitsToSingle(0x7FC12345)));
        w.Set("arr.u8", GgufValue.OfArray(new byte[] { 0, 1, 255 }));
        w.Set("arr.i8", GgufValue.OfArray(new sbyte[] { -128, 0, 127 }));
        w.Set("arr.u16", GgufValue.OfArray(new ushort[] { 1, 65535 }));
        w.Set("arr.i16", GgufValue.OfArray(new short[] { -1, 1 }));
        w.Set("arr.u32", GgufValue.OfArray(new uint[] { 7, uint.MaxValue }));
        w.Set("arr.i32", GgufValue.OfArray(new[] { -7, int.MaxValue }));
        w.Set("arr.f32", GgufValue.OfArray(new[] { 1.5f, -0f, float.PositiveInfinity }));
        w.Set("arr.bool", GgufValue.OfArray(new[] { true, false, true }));
        w.Set("arr.str", GgufValue.OfArray(new[] { "a", "", "ünï", "<0x0A>" }));
        w.Set("arr.u64", GgufValue.OfArray(new ulong[] { 0, ulong.MaxValue }));
        w.Set("arr.i64", GgufValue.OfArray(new long[] { long.MinValue, 5 }));
        w.Set("arr.f64", GgufValue.OfArray(new[] { double.Epsilon, -2.5 }));
        w.Set("arr.empty", GgufValue.OfArray(Array.Empty<string>()));
        w.Set("arr.nested", GgufValue.OfArray(new[]
        {
            GgufArray.From(new[] { 1, 2, 3 }),
            GgufArray.From(new[] { "x", "yz" }),
            GgufArray.From(new[] { GgufArray.From(new[] { 1.0, 2.0 }), GgufArray.From(Array.Empty<bool>()) }),
        }));
        return w;
    }

    private static void AssertValueEqual(GgufValue expected, GgufValue actual, string key)
    {
        Assert.True(expected.Type == actual.Type, $"{key}: type {actual.Type}, expected {expected.Type}");
        if (expected.Value is GgufArray ea)
        {
            var aa = Assert.IsType<GgufArray>(actual.Value);
            Assert.Equal(ea.ElementType, aa.ElementType);
            Assert.Equal(ea.Items.GetType(), aa.Items.GetType());
            Assert.Equal(ea.Count, aa.Count);
            for (var i = 0; i < ea.Count; i++)
            {
                var e = ea.Items.GetValue(i)!;
                var a = aa.Items.GetValue(i)!;
                if (e is GgufArray) AssertValueEqual(new GgufValue(GgufValueType.Array, e), new GgufValue(GgufValueType.Array, a), $"{key}[{i}]");
                else Assert.Equal(e, a);
            }
        }
        else if (expected.Value is float f) Assert.Equal(BitConverter.SingleToUInt32Bits(f), BitConverter.SingleToUInt32Bits((float)actual.Value));
        else Assert.Equal(expected.Value, actual.Value);
    }

    [Fact]
    public void AllValueTypesAndNestedArraysRoundTrip()
    {
        using var tmp = new TempDir();
        var w = AllValueTypes();
        w.AddTensor("t", [32, 2], GgmlType.F32, GgufTensorData.FromFloats(Enumerable.Range(0, 64).Select(i => (float)i).ToArray()));
        var path = tmp.File("values.gguf");
        w.WriteTo(path);
        Assert.Equal(w.ComputeFileSize(), new FileInfo(path).Length);
        using var f = GgufFile.Open(path);
        Assert.Equal(3u, f.Version);
        Assert.Equal(w.Metadata.Select(kv => kv.Key), f.Metadata.Select(kv => kv.Key));
        foreach (var kv in w.Metadata) AssertValueEqual(kv.Value, f.Get(kv.Key)!, kv.Key);
        Assert.Equal(Enumerable.Range(0, 64).Select(i => (float)i), f.ReadTensorFloat("t"));
    }

    [Fact]
    public void Alignment64IsHonoredWithZeroPadding()
    {
        using var tmp = new TempDir();
        var w = new GgufWriter().SetUInt32("general.alignment", 64).SetString("general.architecture", "test");
        var rng = new Random(1);
        var sizes = new[] { 7, 32, 100, 1 };
        var data = sizes.Select(n => Enumerable.Range(0, n).Select(_ => (float)rng.NextDouble()).ToArray()).ToArray();
        for (var i = 0; i < sizes.Length; i++) w.AddTensor($"t{i}", [sizes[i]], GgmlType.F32, GgufTensorData.FromFloats(data[i]));
        var path = tmp.File("a64.gguf");
        w.WriteTo(path);
        using var f = GgufFile.Open(path);
        Assert.Equal(64, f.Alignment);
        Assert.Equal(0, f.DataOffset % 64);
        var bytes = File.ReadAllBytes(path);
        Assert.All(bytes[(int)f.HeaderLength..(int)f.DataOffset], b => Assert.Equal(0, b));
        long expectedOffset = 0;
        for (var i = 0; i < sizes.Length; i++)
        {
            var t = f.Tensors[i];
            Assert.Equal(expectedOffset, t.Offset);
            Assert.Equal(0, (f.DataOffset + t.Offset) % 64);
            Assert.Equal(data[i], f.ReadTensorFloat(t));
            var end = f.DataOffset + t.Offset + t.ByteSize;
            var padded = (t.ByteSize + 63) / 64 * 64;
            Assert.All(bytes[(int)end..(int)(f.DataOffset + t.Offset + padded)], b => Assert.Equal(0, b));
            expectedOffset += padded;
        }
        Assert.Equal(f.DataOffset + expectedOffset, bytes.Length);
    }

    [Fact]
    public void FailedWriteLeavesNoFileAndKeepsAnExistingOne()
    {
        using var tmp = new TempDir();
        var path = tmp.File("out.gguf");
        var w = new GgufWriter().SetString("general.architecture", "test");
        w.AddTensor("ok", [64], GgmlType.F32, GgufTensorData.FromFloats(new float[64]));
        w.AddTensor("boom", [64], GgmlType.F32, GgufTensorData.FromStream(s =>
        {
            s.Write(new byte[100]);
            throw new IOException("disk full (simulated)");
        }));
        Assert.Throws<IOException>(() => w.WriteTo(path));
        Assert.Empty(Directory.GetFiles(tmp.Path));

        File.WriteAllText(path, "previous content");
        Assert.Throws<IOException>(() => w.WriteTo(path));
        Assert.Equal("previous content", File.ReadAllText(path));
        Assert.Single(Directory.GetFiles(tmp.Path));

        // a callback writing too few bytes is an error too
        w.ReplaceTensor("boom", GgufTensorData.FromStream(s => s.Write(new byte[255])));
        Assert.Throws<InvalidOperationException>(() => w.WriteTo(path));
        Assert.Equal("previous content", File.ReadAllText(path));
        w.ReplaceTensor("boom", GgufTensorData.FromStream(s => s.Write(new byte[257])));
        Assert.Throws<InvalidOperationException>(() => w.WriteTo(path));
        Assert.Single(Directory.GetFiles(tmp.Path));
    }

    [Fact]
    public void InvalidValuesAndTensorsAreRejectedWhenAdded()
    {
        var w = new GgufWriter();
        Assert.Throws<ArgumentException>(() => w.Set("x", new GgufValue(GgufValueType.UInt32, 5)));            // int, not uint
        Assert.Throws<ArgumentException>(() => w.Set("x", new GgufValue(GgufValueType.Array, new GgufArray(GgufValueType.String, new[] { 1 }))));
        Assert.Throws<ArgumentException>(() => w.Set("", GgufValue.Of(1u)));
        Assert.Throws<ArgumentException>(() => w.SetUInt32("general.alignment", 48));
        Assert.Throws<ArgumentException>(() => w.SetInt32("general.alignment", 64));
        GgufArray deep = GgufArray.From(new[] { 1 });
        for (var i = 0; i < GgufFile.MaxArrayNesting; i++) deep = GgufArray.From(new[] { deep });
        Assert.Throws<ArgumentException>(() => w.Set("deep", GgufValue.Of(deep)));
        Assert.Throws<ArgumentException>(() => w.AddTensor(new string('n', 64), [32], GgmlType.F32, GgufTensorData.FromFloats(new float[32])));
        Assert.Throws<ArgumentException>(() => w.AddTensor("q", [33], GgmlType.Q8_0, GgufTensorData.FromFloats(new float[33])));
        Assert.Throws<ArgumentException>(() => w.AddTensor("q", [256], GgmlType.Q4_K, GgufTensorData.FromFloats(new float[256])));
        Assert.Throws<ArgumentException>(() => w.AddTensor("b", [32], GgmlType.F16, GgufTensorData.FromBytes(new byte[63])));
        Assert.Throws<ArgumentException>(() => w.AddTensor("d", [1, 1, 1, 1, 1], GgmlType.F32, GgufTensorData.FromFloats(new float[1])));
        Assert.Throws<ArgumentException>(() => w.AddTensor("n", [32, 2], GgmlType.F32, GgufTensorData.FromFloats(new float[32])));
        w.AddTensor("t", [32], GgmlType.F32, GgufTensorData.FromFloats(new float[32]));
        Assert.Throws<ArgumentException>(() => w.AddTensor("t", [32], GgmlType.F32, GgufTensorData.FromFloats(new float[32])));
        w.AddTensor("raw", [32], GgmlType.F16, GgufTensorData.FromBytes(new byte[64]));
        Assert.Throws<ArgumentException>(() => w.ConvertTensor("raw", GgmlType.BF16)); // same size, different meaning
        w.ConvertTensor("t", GgmlType.Q8_0);
        Assert.Equal(GgmlType.Q8_0, w.Tensors.Single(x => x.Name == "t").Type);
    }

    [Fact]
    public void FloatSourcesAreEncodedWithTheQuantizer()
    {
        using var tmp = new TempDir();
        var rng = new Random(9);
        const int cols = 64, rows = 40;
        var x = Enumerable.Range(0, cols * rows).Select(_ => (float)(rng.NextDouble() * 4 - 2)).ToArray();
        var w = new GgufWriter();
        foreach (var type in new[] { GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0 })
        {
            w.AddTensor($"floats.{type}", [cols, rows], type, GgufTensorData.FromFloats(x));
            w.AddTensor($"lazy.{type}", [cols, rows], type, GgufTensorData.FromFloats(() => x));
            w.AddTensor($"rows.{type}", [cols, rows], type, GgufTensorData.FromRows((first, count, dst) => x.AsSpan((int)first * cols, count * cols).CopyTo(dst)));
        }
        var path = tmp.File("enc.gguf");
        w.WriteTo(path);
        using var f = GgufFile.Open(path);
        foreach (var type in new[] { GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0 })
        {
            var expected = new byte[GgmlTypeInfo.RowBytes(type, x.Length)];
            GgmlQuantizer.Quantize(type, x, expected);
            foreach (var kind in new[] { "floats", "lazy", "rows" })
            {
                var t = f.GetTensor($"{kind}.{type}");
                Assert.Equal(type, t.Type);
                Assert.True(expected.AsSpan().SequenceEqual(f.GetTensorBytes(t)), $"{kind}.{type}");
            }
        }
    }

    [Fact]
    public void CopyWithChangesKeepsTheRestAndAppliesEdits()
    {
        using var tmp = new TempDir();
        var src = RandomTestModels.StoriesShaped(tmp.File("model"));
        var dst = tmp.File("edited.gguf");
        using var f = GgufFile.Open(src);
        var newEmbd = Enumerable.Range(0, 64 * 512).Select(i => (float)Math.Sin(i)).ToArray();
        GgufWriter.Copy(f, dst, w =>
        {
            w.SetString("general.name", "edited");                 // override in place
            w.SetUInt32("bupo.step", 42);                           // add
            Assert.True(w.Remove("tokenizer.ggml.unknown_token_id")); // remove
            w.ReplaceTensor("token_embd.weight", GgmlType.F16, GgufTensorData.FromFloats(newEmbd));
            w.ConvertTensor("blk.0.attn_q.weight", GgmlType.Q8_0);
            w.ConvertTensor("blk.0.ffn_down.weight", GgmlType.BF16);
        });
        using var g = GgufFile.Open(dst);
        Assert.Equal(f.Metadata.Count, g.Metadata.Count); // one added, one removed
        Assert.Equal("edited", g.GetString("general.name"));
        Assert.Equal(f.Metadata.ToList().FindIndex(kv => kv.Key == "general.name"), g.Metadata.ToList().FindIndex(kv => kv.Key == "general.name"));
        Assert.Equal(42, g.GetInt("bupo.step"));
        Assert.False(g.Has("tokenizer.ggml.unknown_token_id"));
        Assert.Equal(f.Tensors.Select(t => t.Name), g.Tensors.Select(t => t.Name));

        var embd = g.GetTensor("token_embd.weight");
        Assert.Equal(GgmlType.F16, embd.Type);
        var f16 = new byte[64 * 512 * 2];
        GgmlQuantizer.Quantize(GgmlType.F16, newEmbd, f16);
        Assert.True(f16.AsSpan().SequenceEqual(g.GetTensorBytes(embd)));

        foreach (var (name, type) in new[] { ("blk.0.attn_q.weight", GgmlType.Q8_0), ("blk.0.ffn_down.weight", GgmlType.BF16) })
        {
            var original = f.ReadTensorFloat(name);
            var expected = new byte[GgmlTypeInfo.RowBytes(type, original.Length)];
            GgmlQuantizer.Quantize(type, original, expected);
            var t = g.GetTensor(name);
            Assert.Equal(type, t.Type);
            Assert.True(expected.AsSpan().SequenceEqual(g.GetTensorBytes(t)), name);
        }
        // untouched tensors are copied as they are
        foreach (var name in new[] { "output.weight", "blk.4.ffn_up.weight", "output_norm.weight" })
            Assert.True(f.GetTensorBytes(f.GetTensor(name)).SequenceEqual(g.GetTensorBytes(g.GetTensor(name))), name);
    }

    [Fact]
    public void NoTensorsMeansNoPadding()
    {
        using var ms = new MemoryStream();
        var w = new GgufWriter().SetString("general.architecture", "x");
        w.WriteTo(ms);
        Assert.Equal(w.ComputeFileSize(), ms.Length);
        Assert.Equal(4 + 4 + 8 + 8 + (8 + 20) + 4 + (8 + 1), ms.Length);
    }
}
