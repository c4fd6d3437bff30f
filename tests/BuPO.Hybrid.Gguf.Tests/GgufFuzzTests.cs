using System.Buffers.Binary;
using System.Diagnostics;
using BuPO.Hybrid.Tests.Support;

namespace BuPO.Hybrid.Gguf.Tests;

/// <summary>
/// Seeded random mutations of a small valid GGUF: <see cref="GgufFile.Open"/> must either succeed or throw
/// <see cref="GgufFormatException"/>, quickly, with bounded allocation.
/// Allocation bounds asserted (bytes allocated by the opening thread during Open):
///  - a rejected file: at most <see cref="FailureAllocationLimit"/>, whatever its size (the validation pass
///    allocates nothing per item; what is left is the exception, its message and the mapping objects);
///  - an accepted file: at most the file size + <see cref="FailureAllocationLimit"/>, and at most
///    <see cref="HeaderAllocationFactor"/> x the header length + that constant (the general bound: .NET strings are
///    UTF-16 objects, so a header full of short strings costs a few times its size).
/// </summary>
public class GgufFuzzTests(ITestOutputHelper output)
{
    private const long FailureAllocationLimit = 64 * 1024;
    private const int HeaderAllocationFactor = 12;
    private const int Iterations = 10_000;

    /// <summary>The fuzz seed: a random model's metadata (stories260K's shape and 512-token tokenizer arrays included),
    /// every value type, nested arrays, and small tensors of several types; about 20 KB.</summary>
    private static byte[] SeedFile(TempDir tmp)
    {
        var w = new GgufWriter();
        using (var f = GgufFile.Open(RandomTestModels.StoriesShaped(tmp.File("model"))))
            foreach (var kv in f.Metadata) w.Set(kv.Key, kv.Value);
        w.Set("test.u8", GgufValue.Of((byte)1)).Set("test.i16", GgufValue.Of((short)-2)).Set("test.u64", GgufValue.Of(3UL))
         .Set("test.f64", GgufValue.Of(0.5)).Set("test.bool", GgufValue.Of(true)).Set("test.bools", GgufValue.OfArray(new[] { true, false }))
         .Set("test.nested", GgufValue.OfArray(new[] { GgufArray.From(new[] { "a", "bc" }), GgufArray.From(new[] { GgufArray.From(new long[] { 1, 2 }) }) }))
         .SetUInt32("general.alignment", 32);
        var rng = new Random(1);
        float[] Floats(int n) => Enumerable.Range(0, n).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray();
        w.AddTensor("norm.weight", [64], GgmlType.F32, GgufTensorData.FromFloats(Floats(64)));
        w.AddTensor("a.weight", [64, 4], GgmlType.F16, GgufTensorData.FromFloats(Floats(256)));
        w.AddTensor("b.weight", [64, 2, 2], GgmlType.Q8_0, GgufTensorData.FromFloats(Floats(256)));
        var q4k = new byte[2 * 144];
        rng.NextBytes(q4k);
        w.AddTensor("c.weight", [256, 2], GgmlType.Q4_K, GgufTensorData.FromBytes(q4k));
        w.AddTensor("d.weight", [32, 1, 1, 3], GgmlType.BF16, GgufTensorData.FromFloats(Floats(96)));
        var path = tmp.File("seed.gguf");
        w.WriteTo(path);
        return File.ReadAllBytes(path);
    }

    /// <summary>Positions of the header's u64 count/length fields and u32 type fields, found by an independent walk.</summary>
    private static (List<int> U64, List<int> U32) Fields(byte[] b)
    {
        var u64 = new List<int> { 8, 16 };
        var u32 = new List<int> { 4 };
        var p = 24;
        ulong U64At(int at) => BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(at));
        uint U32At(int at) => BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(at));
        void Str() { u64.Add(p); p += 8 + (int)U64At(p); }
        int Size(uint t) => t switch { 0 or 1 or 7 => 1, 2 or 3 => 2, 4 or 5 or 6 => 4, _ => 8 };
        void Arr()
        {
            u32.Add(p); var et = U32At(p); p += 4;
            u64.Add(p); var n = (int)U64At(p); p += 8;
            for (var i = 0; i < n; i++)
                if (et == 8) Str(); else if (et == 9) Arr(); else p += Size(et);
        }
        var nt = (int)U64At(8);
        var nkv = (int)U64At(16);
        for (var i = 0; i < nkv; i++)
        {
            Str();
            u32.Add(p); var t = U32At(p); p += 4;
            if (t == 8) Str(); else if (t == 9) Arr(); else p += Size(t);
        }
        for (var i = 0; i < nt; i++)
        {
            Str();
            u32.Add(p); var nd = (int)U32At(p); p += 4;
            for (var d = 0; d < nd; d++) { u64.Add(p); p += 8; }
            u32.Add(p); p += 4;
            u64.Add(p); p += 8;
        }
        return (u64, u32);
    }

    private static byte[] Mutate(byte[] seed, int headerLength, List<int> u64Fields, List<int> u32Fields, Random rng, out string what)
    {
        var b = (byte[])seed.Clone();
        int Pos() => rng.Next(10) < 9 ? rng.Next(headerLength) : rng.Next(b.Length);
        ulong RandomU64() => rng.Next(6) switch
        {
            0 => (ulong)rng.NextInt64(),
            1 => ulong.MaxValue - (ulong)rng.Next(16),
            2 => (ulong)rng.Next(1 << 20),
            3 => 1UL << rng.Next(64),
            4 => (ulong)long.MaxValue + (ulong)rng.Next(3) - 1,
            _ => (ulong)(long)rng.Next(-64, 64),
        };
        switch (rng.Next(7))
        {
            case 0:
            {
                var n = rng.Next(1, 9);
                for (var i = 0; i < n; i++) b[Pos()] ^= (byte)rng.Next(1, 256);
                what = $"{n} byte flips";
                return b;
            }
            case 1:
            {
                var at = u64Fields[rng.Next(u64Fields.Count)];
                var v = RandomU64();
                var old = BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(at));
                if (rng.Next(3) == 0) v = old + (ulong)(long)rng.Next(-3, 4);
                BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(at), v);
                what = $"u64 at {at}: {old} -> {v}";
                return b;
            }
            case 2:
            {
                var at = u32Fields[rng.Next(u32Fields.Count)];
                var v = rng.Next(3) == 0 ? (uint)rng.Next() : (uint)rng.Next(48);
                BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(at), v);
                what = $"u32 at {at} -> {v}";
                return b;
            }
            case 3:
            {
                var len = rng.Next(2) == 0 ? rng.Next(Math.Min(headerLength + 64, b.Length)) : rng.Next(b.Length);
                what = $"truncated to {len}";
                return b[..len];
            }
            case 4:
            {
                var at = Pos();
                var ins = new byte[rng.Next(1, 17)];
                if (rng.Next(2) == 0) rng.NextBytes(ins);
                what = $"{ins.Length} bytes inserted at {at}";
                return [.. b.AsSpan(0, at), .. ins, .. b.AsSpan(at)];
            }
            case 5:
            {
                var at = Pos();
                var n = Math.Min(rng.Next(1, 17), b.Length - at);
                what = $"{n} bytes deleted at {at}";
                return [.. b.AsSpan(0, at), .. b.AsSpan(at + n)];
            }
            default:
            {
                var parts = new List<string>();
                for (var k = 0; k < 3; k++)
                {
                    b = Mutate(b, Math.Min(headerLength, b.Length), u64Fields.Where(x => x + 8 <= b.Length).ToList(), u32Fields.Where(x => x + 4 <= b.Length).ToList(), rng, out var w);
                    if (b.Length < 32) break;
                    parts.Add(w);
                }
                what = "combined: " + string.Join("; ", parts);
                return b;
            }
        }
    }

    [Fact(Timeout = 180_000)]
    public async Task RandomMutationsOpenOrThrowFormatErrorWithBoundedAllocation()
    {
        using var tmp = new TempDir();
        var seed = SeedFile(tmp);
        int headerLength;
        using (var f = GgufFile.Open(tmp.File("seed.gguf"))) headerLength = (int)f.HeaderLength;
        var (u64Fields, u32Fields) = Fields(seed);
        Assert.True(u64Fields.Count > 512, $"{u64Fields.Count} u64 fields"); // the walk found the token strings
        var path = tmp.File("mutant.gguf");

        await Task.Run(() =>
        {
            var sw = Stopwatch.StartNew();
            int accepted = 0, rejected = 0;
            long maxRejectAlloc = 0, maxAcceptAlloc = 0;
            var slowest = TimeSpan.Zero;
            for (var i = 0; i < Iterations; i++)
            {
                var rng = new Random(20_250_000 + i);
                var bytes = Mutate(seed, headerLength, u64Fields, u32Fields, rng, out var what);
                File.WriteAllBytes(path, bytes);
                var t0 = sw.Elapsed;
                var before = GC.GetAllocatedBytesForCurrentThread();
                GgufFile? file = null;
                Exception? error = null;
                try { file = GgufFile.Open(path); }
                catch (Exception e) { error = e; }
                var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
                var took = sw.Elapsed - t0;
                if (took > slowest) slowest = took;
                var ctx = $"iteration {i} ({what}), {bytes.Length} bytes";
                if (error != null)
                {
                    if (error is not GgufFormatException) Assert.Fail($"{ctx}: {error.GetType().Name}: {error.Message}\n{error.StackTrace}");
                    Assert.DoesNotContain('\n', error.Message);
                    Assert.Contains(path, error.Message);
                    rejected++;
                    maxRejectAlloc = Math.Max(maxRejectAlloc, allocated);
                    Assert.True(allocated <= FailureAllocationLimit, $"{ctx}: rejecting allocated {allocated} bytes");
                    continue;
                }
                using (file)
                {
                    accepted++;
                    maxAcceptAlloc = Math.Max(maxAcceptAlloc, allocated);
                    Assert.True(allocated <= bytes.Length + FailureAllocationLimit, $"{ctx}: opening allocated {allocated} bytes");
                    Assert.True(allocated <= HeaderAllocationFactor * file!.HeaderLength + FailureAllocationLimit, $"{ctx}: opening allocated {allocated} bytes for a {file.HeaderLength}-byte header");
                    // what was accepted must be usable
                    foreach (var t in file.Tensors)
                    {
                        var raw = file.GetTensorBytes(t);
                        Assert.Equal(t.ByteSize, raw.Length);
                        if (GgmlDequantizer.Supports(t.Type)) Assert.Equal(t.ElementCount, file.ReadTensorFloat(t).Length);
                    }
                    foreach (var kv in file.Metadata) _ = kv.Value.ToString();
                }
            }
            output.WriteLine($"{Iterations} mutations in {sw.Elapsed.TotalSeconds:F1} s: {accepted} accepted, {rejected} rejected; " +
                             $"max allocation {maxAcceptAlloc} B accepted (file {seed.Length} B, header {headerLength} B), {maxRejectAlloc} B rejected; slowest open {slowest.TotalMilliseconds:F1} ms");
            Assert.True(rejected > Iterations / 2, $"only {rejected} rejected: the mutations are too weak");
            Assert.True(accepted > 0);
            Assert.True(slowest < TimeSpan.FromSeconds(2), $"an open took {slowest}");
        }, TestContext.Current.CancellationToken);
    }

    /// <summary>The real Qwen2 vocabulary (tokens and merges; skipped without ../shared) and a generated SentencePiece
    /// vocabulary of as many tokens.</summary>
    [Theory]
    [InlineData("qwen2-vocab")]
    [InlineData("generated-151936")]
    public void HeaderOnlyVocabAllocatesAFewTimesItsSize(string which)
    {
        using var tmp = new TempDir();
        var path = which == "qwen2-vocab" ? SharedAssets.RequireFile(SharedAssets.Qwen2Vocab) : RandomTestModels.LargeSpmVocab(tmp.Path);
        using (GgufFile.Open(path)) { } // warm up
        var before = GC.GetAllocatedBytesForCurrentThread();
        using var f = GgufFile.Open(path);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        output.WriteLine($"{path}: {f.FileLength} bytes, header {f.HeaderLength}, allocated {allocated} ({(double)allocated / f.HeaderLength:F2}x)");
        Assert.True(allocated <= HeaderAllocationFactor * f.HeaderLength + FailureAllocationLimit);
    }
}
