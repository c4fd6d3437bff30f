using BuPO.Hybrid.Gguf;
using BuPO.Hybrid.Llama;
using BuPO.Hybrid.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace BuPO.Hybrid.Model.Tests;

[Collection("llama.cpp")]
public sealed class ExportTests : IDisposable
{
    private readonly ITestOutputHelper _out;
    private readonly string _dir = Directory.CreateTempSubdirectory("bupo-export-").FullName;

    public ExportTests(ITestOutputHelper output) { _out = output; LlamaReference.EnsureBackend(); }
    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    private static int[][] Prompts()
    {
        var seqs = TestModels.Sequences(512, 41, 20, 16, 24, 12);
        foreach (var s in seqs) s[0] = 1;
        return seqs;
    }

    private static float[][][] LlamaLogits(string path, int[][] seqs)
    {
        using var m = LlamaModel.Load(path);
        return seqs.Select(s => LlamaReference.Logits(m, s)).ToArray();
    }

    private static double MaxDiff(float[][][] a, float[][][] b)
    {
        double w = 0;
        for (var i = 0; i < a.Length; i++)
            for (var p = 0; p < a[i].Length; p++)
                for (var j = 0; j < a[i][p].Length; j++)
                    w = Math.Max(w, Math.Abs(a[i][p][j] - b[i][p][j]));
        return w;
    }

    [Fact]
    public void F32ExportKeepsMetadataTensorsAndLogits()
    {
        var src = TinyTrainingModels.StoriesShaped;
        var outPath = Path.Combine(_dir, "stories-f32.gguf");
        using (var model = TestModels.StoriesShaped()) ModelExporter.Export(model, src, outPath, GgmlType.F32);
        using (var a = GgufFile.Open(src))
        using (var b = GgufFile.Open(outPath))
        {
            Assert.Equal(a.Tensors.Select(t => (t.Name, string.Join(",", t.Shape))), b.Tensors.Select(t => (t.Name, string.Join(",", t.Shape))));
            Assert.All(b.Tensors, t => Assert.Equal(GgmlType.F32, t.Type));
            // file_type and quantization_version follow the export's type (GgufTypePolicy: no quantization_version in F32).
            foreach (var kv in a.Metadata.Where(kv => kv.Key is not ("general.file_type" or "general.quantization_version")))
                Assert.True(kv.Value.ToString() == b.Get(kv.Key)?.ToString(), $"{kv.Key}: {kv.Value} in the source, {b.Get(kv.Key)?.ToString() ?? "absent"} in the export");
            Assert.Equal(a.GetArray("tokenizer.ggml.tokens")!.Items.Cast<string>(), b.GetArray("tokenizer.ggml.tokens")!.Items.Cast<string>());
            Assert.Null(b.Get("general.quantization_version"));
        }
        var seqs = Prompts();
        var diff = MaxDiff(LlamaLogits(src, seqs), LlamaLogits(outPath, seqs));
        _out.WriteLine($"F32 export of unchanged weights: max |Δlogit| llama.cpp(source) vs llama.cpp(export) = {diff:E2}");
        Assert.True(diff <= 1e-5);
        Assert.DoesNotContain(Directory.GetFiles(_dir), f => f.Contains(".tmp", StringComparison.Ordinal));
    }

    [Fact]
    public void ExportWritesTheCurrentWeights()
    {
        var src = TinyTrainingModels.StoriesShaped;
        var outPath = Path.Combine(_dir, "stories-trained.gguf");
        using var model = TestModels.StoriesShaped();
        using var scope = NewDisposeScope();
        using (no_grad())
        {
            torch.manual_seed(7); // deterministic perturbation of every parameter ("a training step")
            using var size = 0.02.ToScalar();
            foreach (var p in model.parameters()) p.add_(randn_like(p), size);
        }
        ModelExporter.Export(model, src, outPath, GgmlType.F32);
        using (var reloaded = TransformerModel.FromGguf(outPath))
            foreach (var (name, p) in model.GgufParameters)
                Assert.Equal(0.0, TestModels.MaxAbsDiff(p, reloaded.GgufParameters.Single(kv => kv.Key == name).Value));
        var seqs = Prompts();
        var llama = LlamaLogits(outPath, seqs);
        using var batch = TokenBatch.Create(seqs);
        using var r = model.Forward(batch);
        double w = 0;
        for (var i = 0; i < seqs.Length; i++)
        {
            var ours = r.Logits!.select(0, i).contiguous().data<float>().ToArray();
            for (var p = 0; p < seqs[i].Length; p++)
                for (var j = 0; j < 512; j++) w = Math.Max(w, Math.Abs(ours[p * 512 + j] - llama[i][p][j]));
        }
        _out.WriteLine($"perturbed weights: max |Δlogit| torch vs llama.cpp(F32 export) = {w:E2}");
        Assert.True(w <= 1e-3);
    }

    [Fact]
    public void Q8_0ExportIsCloseToF32()
    {
        var src = TinyTrainingModels.StoriesShaped;
        var outPath = Path.Combine(_dir, "stories-q8_0.gguf");
        using (var model = TestModels.StoriesShaped()) ModelExporter.Export(model, src, outPath, GgmlType.Q8_0);
        using (var f = GgufFile.Open(outPath))
        {
            Assert.Equal(7, f.RequireInt("general.file_type"));
            Assert.Equal(GgmlType.Q8_0, f.GetTensor("blk.0.attn_q.weight").Type);
            Assert.Equal(GgmlType.Q8_0, f.GetTensor("token_embd.weight").Type);
            Assert.Equal(GgmlType.F32, f.GetTensor("blk.0.attn_norm.weight").Type);
            Assert.Equal(GgmlType.F32, f.GetTensor("output_norm.weight").Type);
            var down = f.GetTensor("blk.0.ffn_down.weight"); // 172 columns: not a multiple of 32, F16 like llama-quantize
            Assert.Equal(down.Shape[0] % 32 == 0 ? GgmlType.Q8_0 : GgmlType.F16, down.Type);
        }
        var seqs = Prompts();
        var f32 = LlamaLogits(src, seqs);
        var q8 = LlamaLogits(outPath, seqs);
        double klSum = 0; var n = 0;
        for (var i = 0; i < seqs.Length; i++)
            for (var p = 0; p < seqs[i].Length; p++, n++)
                klSum += Kl(f32[i][p], q8[i][p]);
        var kl = klSum / n;
        _out.WriteLine($"Q8_0 export: mean per-token KL(fp32 || Q8_0) = {kl:E3} nats over {n} positions; max |Δlogit| {MaxDiff(f32, q8):E2}");
        Assert.True(kl < 0.01, $"KL {kl}");
        Assert.True(kl > 0, "Q8_0 should differ from F32");
    }

    [Fact]
    public void KQuantExportGoesThroughLlamaQuantize()
    {
        var src = TinyTrainingModels.StoriesShaped;
        var outPath = Path.Combine(_dir, "stories-q6_k.gguf");
        using (var model = TestModels.StoriesShaped()) BuPO.Hybrid.RL.Training.WeightSync.Export(model, src, outPath, "Q6_K", threads: 2);
        Assert.Single(Directory.GetFiles(_dir)); // the F16 intermediate is gone
        var seqs = Prompts().Take(2).ToArray();
        var kq = LlamaLogits(outPath, seqs);
        var f32 = LlamaLogits(src, seqs);
        double klSum = 0; var n = 0;
        for (var i = 0; i < seqs.Length; i++)
            for (var p = 0; p < seqs[i].Length; p++, n++) klSum += Kl(f32[i][p], kq[i][p]);
        _out.WriteLine($"Q6_K export (via F16 + llama_model_quantize): mean KL(fp32 || Q6_K) = {klSum / n:E3}");
        Assert.True(klSum / n < 0.05);
    }

    [Theory]
    [InlineData("Q8_0", false)]
    [InlineData("Q6_K", true)]
    public void WeightSyncRun_ExportsThenReloadsThatFile_AndTimesEachStage(string type, bool quantized)
    {
        var src = TinyTrainingModels.StoriesShaped;
        var outPath = Path.Combine(_dir, $"sync-{type}.gguf");
        var reloaded = new List<string>();
        BuPO.Hybrid.RL.Training.WeightSyncTimes times;
        using (var model = TestModels.StoriesShaped())
            times = BuPO.Hybrid.RL.Training.WeightSync.Run(model, src, outPath, type, path =>
            {
                Assert.True(File.Exists(path), "the file is written before the reload");
                reloaded.Add(path);
                Thread.Sleep(20); // the reload's time is measured around this callback
            }, threads: 2);
        Assert.Equal([outPath], reloaded);
        Assert.Equal(outPath, times.File);
        Assert.Equal(new FileInfo(outPath).Length, times.Bytes);
        Assert.True(times.ExportSeconds > 0);
        Assert.Equal(quantized, times.QuantizeSeconds is > 0);
        Assert.InRange(times.ReloadSeconds, 0.015, 60);
        Assert.Equal(times.ExportSeconds + (times.QuantizeSeconds ?? 0) + times.ReloadSeconds, times.TotalSeconds, 12);
        Assert.Single(Directory.GetFiles(_dir)); // no intermediate left
        using var f = GgufFile.Open(outPath);
        Assert.Equal(quantized ? 18 : 7, f.RequireInt("general.file_type")); // llama_ftype MOSTLY_Q6_K / MOSTLY_Q8_0
    }

    [Fact]
    public void MismatchedSourceAndUnknownTypeAreUserErrors()
    {
        var src = TinyTrainingModels.StoriesShaped;
        using var model = TestModels.StoriesShaped();
        var e1 = Assert.ThrowsAny<BupoException>(() => ModelExporter.Export(model, TinyTrainingModels.Vocab, Path.Combine(_dir, "x.gguf"), GgmlType.F16));
        var e2 = Assert.ThrowsAny<BupoException>(() => BuPO.Hybrid.RL.Training.WeightSync.Export(model, src, Path.Combine(_dir, "x.gguf"), "Q9_Z"));
        var e3 = Assert.ThrowsAny<BupoException>(() => ModelExporter.Export(model, src, src, GgmlType.F32));
        _out.WriteLine(e1.Message); _out.WriteLine(e2.Message); _out.WriteLine(e3.Message);
        Assert.Empty(Directory.GetFiles(_dir));
    }

    /// <summary>KL(softmax(a) || softmax(b)) in nats, computed in double.</summary>
    internal static double Kl(float[] a, float[] b)
    {
        double Lse(float[] z) { var m = z.Max(); return m + Math.Log(z.Sum(v => Math.Exp(v - m))); }
        double la = Lse(a), lb = Lse(b), kl = 0;
        for (var j = 0; j < a.Length; j++)
        {
            var lpa = a[j] - la;
            kl += Math.Exp(lpa) * (lpa - (b[j] - lb));
        }
        return kl;
    }
}
