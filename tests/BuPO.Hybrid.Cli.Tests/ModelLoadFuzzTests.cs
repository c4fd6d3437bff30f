using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using BuPO.Hybrid.Gguf;
using BuPO.Hybrid.Tests.Support;

namespace BuPO.Hybrid.Cli.Tests;

/// <summary>
/// Seeded metadata mutations of real model files (stories260K, a random qwen3) through the load path of
/// <c>generate</c>, <c>analyze</c> and <c>eval</c>, each in a child process: every run must exit 0, or 1 with exactly one
/// <c>error:</c> line and no stack trace; never a signal (llama.cpp's GGML_ASSERT aborts with 134, SIGBUS/SIGSEGV 135/139)
/// nor .NET's crash exit. The count per model is <c>BUPO_LOAD_FUZZ_COUNT</c> (default 30, about 30 s a model on 2 cores: CI's time budget).
/// </summary>
public sealed class ModelLoadFuzzTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("bupo-load-fuzz-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    private static int Count => int.TryParse(Environment.GetEnvironmentVariable("BUPO_LOAD_FUZZ_COUNT"), out var n) && n > 0 ? n : 30;

    [Fact]
    public void StoriesMetadataMutationsNeverCrashTheProcess() => Fuzz(SharedAssets.RequireFile(SharedAssets.StoriesModel), seedBase: 1_000_000);

    [Fact]
    public void RandomLlamaMetadataMutationsNeverCrashTheProcess() => Fuzz(TinyTrainingModels.StoriesShaped, seedBase: 3_000_000);

    [Fact]
    public void Qwen3MetadataMutationsNeverCrashTheProcess()
    {
        // A random qwen3 with the generated SentencePiece vocabulary (llama.cpp loads a BPE vocabulary only with its merges).
        var model = Path.Combine(_dir, "qwen3-tiny.gguf");
        using (var vocab = GgufFile.Open(TinyTrainingModels.Vocab))
            RandomGgufModel.Write(model, RandomModelSpec.Named("qwen3-tiny") with { Seed = 7 }, vocab);
        Fuzz(model, seedBase: 2_000_000);
    }

    [Theory]
    [InlineData(100_000L)]
    [InlineData(0L)]
    [InlineData(4_294_967_295L)]
    public void TheBlockCountsFoundAreOneLineErrors(long blockCount)
    {
        // As found: block_count 100000 or 0 aborted generate and eval (GGML_ASSERT, rc 134, a gdb backtrace on stdout);
        // analyze aborted after 20 s and 650 MB, or threw an unexpected OverflowException naming no file.
        var model = Path.Combine(_dir, $"blocks-{blockCount}.gguf");
        using (var source = GgufFile.Open(TinyTrainingModels.StoriesShaped))
            GgufWriter.Copy(source, model, w => w.SetUInt32("llama.block_count", (uint)blockCount));
        var data = Path.Combine(_dir, "tiny.jsonl");
        File.WriteAllText(data, "{\"problem\": \"Once upon a time\", \"answer\": \"1\"}\n");
        foreach (var (name, args) in Commands(model, data))
        {
            var (code, stdout, stderr) = CliRunner.RunChild(args);
            Assert.True(code == 1, $"{name}: rc {code}; {Tail(stderr)} {Tail(stdout)}");
            var line = Assert.Single(stderr.Split('\n'), l => l.StartsWith("error:", StringComparison.Ordinal));
            Assert.Contains(model, line);
            Assert.Contains("block_count", line);
            Assert.DoesNotContain("   at ", stdout + stderr);
        }
    }

    private void Fuzz(string model, int seedBase)
    {
        var data = Path.Combine(_dir, "tiny.jsonl");
        File.WriteAllText(data, "{\"problem\": \"Once upon a time\", \"answer\": \"1\"}\n");
        // The unmutated model must pass every command, or the mutants would only exercise one rejection path.
        foreach (var (name, args) in Commands(model, data))
        {
            var (code, stdout, stderr) = CliRunner.RunChild(args);
            Assert.True(code == 0, $"the unmutated {Path.GetFileName(model)} fails {name}: rc {code}; {Tail(stderr)} {Tail(stdout)}");
        }
        var failures = new ConcurrentBag<string>();
        var outcomes = new ConcurrentDictionary<string, int>();
        var sw = Stopwatch.StartNew();
        using var source = GgufFile.Open(model);
        var keys = source.Metadata.Select(kv => kv.Key).ToArray();
        var gate = new object();
        // Each mutant is written just before its runs and deleted after them: a few at a time on disk, not Count.
        Parallel.For(0, Count, new ParallelOptions { MaxDegreeOfParallelism = 2 }, i =>
        {
            var rng = new Random(seedBase + i);
            var path = Path.Combine(_dir, $"mutant-{seedBase + i}.gguf");
            var what = new List<string>();
            lock (gate)
                GgufWriter.Copy(source, path, w =>
                {
                    var n = rng.Next(4) == 0 ? rng.Next(2, 4) : 1;
                    for (var k = 0; k < n; k++) what.Add(Mutate(w, keys, rng));
                });
            try
            {
                foreach (var (name, args) in Commands(path, data))
                {
                    var (code, stdout, stderr) = CliRunner.RunChild(args);
                    var errorLines = stderr.Split('\n').Count(l => l.StartsWith("error:", StringComparison.Ordinal));
                    var ok = code == 0 || (code == 1 && errorLines == 1 && !stderr.Contains("   at ", StringComparison.Ordinal) && !stdout.Contains("   at ", StringComparison.Ordinal));
                    outcomes.AddOrUpdate($"{name} rc {code}", 1, (_, c) => c + 1);
                    if (!ok)
                        failures.Add($"mutant {seedBase + i} ({string.Join("; ", what)}) {name}: rc {code}, {errorLines} error lines; stderr tail: {Tail(stderr)} stdout tail: {Tail(stdout)}");
                }
            }
            finally { File.Delete(path); }
        });
        output.WriteLine($"{Count} mutants of {Path.GetFileName(model)} x 3 commands in {sw.Elapsed.TotalSeconds:0.0} s: " +
                         string.Join(", ", outcomes.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key}: {kv.Value}")));
        Assert.True(failures.IsEmpty, string.Join("\n", failures.Take(10)));
    }

    private static IEnumerable<(string Name, string[] Args)> Commands(string model, string data)
    {
        yield return ("generate", ["generate", model, "--prompt", "Once upon", "--max-tokens", "2", "--threads", "1", "--temperature", "0"]);
        yield return ("analyze", ["analyze", "--model", model, "--prompt", "Once upon a time", "--threads", "1"]);
        yield return ("eval", ["eval", "--model", model, "--dataset", data, "--k", "1", "--max-tokens", "2", "--parallel", "1", "--threads", "1", "--template", "raw"]);
    }

    private static string Tail(string s)
    {
        s = s.Trim().ReplaceLineEndings(" | ");
        return s.Length <= 400 ? s : "..." + s[^400..];
    }

    /// <summary>One seeded change to the metadata: a value replaced by an edge value or another type, a key removed, an array cut.</summary>
    private static string Mutate(GgufWriter w, string[] keys, Random rng)
    {
        // Most mutations hit the hyperparameters and token ids llama.cpp and the trainer read.
        var arch = w.Get("general.architecture")?.Value as string ?? "llama";
        var hot = keys.Where(k => k.StartsWith(arch + ".", StringComparison.Ordinal) || k.EndsWith("_token_id", StringComparison.Ordinal)
                                  || k is "general.architecture" or "tokenizer.ggml.tokens" or "tokenizer.ggml.scores" or "tokenizer.ggml.token_type" or "tokenizer.ggml.model" or "tokenizer.ggml.merges" or "general.alignment").ToArray();
        var key = rng.Next(5) == 0 ? keys[rng.Next(keys.Length)] : hot[rng.Next(hot.Length)];
        if (rng.Next(12) == 0)
        {
            // A new key llama.cpp reads (a per-layer array or an expert count) where the file had none.
            var added = new[] { $"{arch}.expert_count", $"{arch}.expert_used_count", $"{arch}.attention.key_length", $"{arch}.attention.sliding_window", $"{arch}.rope.dimension_count", $"{arch}.vocab_size" }[rng.Next(6)];
            var v = EdgeInt(rng, 8);
            w.Set(added, GgufValue.Of((uint)v));
            return $"added {added} = {(uint)v}";
        }
        var old = w.Get(key);
        if (old == null) return $"no {key}";
        switch (rng.Next(10))
        {
            case 0:
                w.Remove(key);
                return $"removed {key}";
            case 1:
                w.Set(key, GgufValue.Of("garbage"));
                return $"{key} -> string";
            case 2:
                w.Set(key, GgufValue.Of(rng.Next(2) == 0 ? float.NaN : -1e30f));
                return $"{key} -> float edge";
            case 3:
                if (old.Value is GgufArray arr && arr.Count > 0)
                {
                    var len = rng.Next(3) switch { 0 => 0, 1 => arr.Count - 1, _ => rng.Next(arr.Count) };
                    var cut = Array.CreateInstance(arr.Items.GetType().GetElementType()!, len);
                    Array.Copy(arr.Items, cut, len);
                    w.Set(key, new GgufValue(GgufValueType.Array, new GgufArray(arr.ElementType, cut)));
                    return $"{key} cut to {len} of {arr.Count}";
                }
                goto default;
            case 4:
            {
                var n = rng.Next(3) == 0 ? 600 : rng.Next(1, 8);
                var items = Enumerable.Range(0, n).Select(_ => (int)EdgeInt(rng, 0)).ToArray();
                w.Set(key, GgufValue.OfArray(items));
                return $"{key} -> int array of {n}";
            }
            default:
            {
                long baseValue = 0;
                try { baseValue = old.AsInt64(); } catch (Exception e) when (e is InvalidCastException or OverflowException) { }
                var v = EdgeInt(rng, baseValue);
                var value = rng.Next(3) switch
                {
                    0 => GgufValue.Of((int)v),
                    1 => GgufValue.Of((ulong)v),
                    _ => GgufValue.Of((uint)v),
                };
                w.Set(key, value);
                return $"{key} -> {value.Type} {value}";
            }
        }
    }

    private static long EdgeInt(Random rng, long old) => rng.Next(10) switch
    {
        0 => 0,
        1 => -1,
        2 => uint.MaxValue,
        3 => int.MaxValue,
        4 => 100_000,
        5 => old + rng.Next(-2, 3),
        6 => old * 2,
        7 => 1L << rng.Next(40),
        8 => long.MaxValue,
        _ => rng.Next(1, 1024),
    };
}
