using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using BuPO.Hybrid.Bench.Models;
using BuPO.Hybrid.Cli.Commands.Bench;
using BuPO.Hybrid.Gguf;
using BuPO.Hybrid.Model;
using BuPO.Hybrid.RL.Training;
using BuPO.Hybrid.Tests.Support;
using BuPO.Hybrid.RL.Algorithms;

namespace BuPO.Hybrid.Cli.Tests;

/// <summary>
/// <c>bupo-hybrid plan</c> and train's <c>--memory</c> check: the arithmetic on Qwen3-0.6B's shape worked out here from
/// its parts, the plan against the peak resident set (VmHWM) of real train runs in child processes, and bad input.
/// </summary>
[Collection(TrainCliCollection.Name)]
public sealed class PlanCommandTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("bupo-plan-cli-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    private static string OneLine(string err) => Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries));

    // ------------------------------------------------------------------ arithmetic

    /// <summary>Qwen3-0.6B: 28 blocks, d 1024, 16 query heads and 8 KV heads of 128, FFN 3072, vocab 151,936, tied.</summary>
    private static ModelShape Qwen3_06B => ModelShape.FromSpec(RandomModelSpec.Named("qwen3-0.6b") with { TensorType = GgmlType.F16 }, 151_936);

    [Fact]
    public void Qwen3_06BFullFineTuningByHand()
    {
        const long d = 1024, nq = 16 * 128, nkv = 8 * 128, ff = 3072, vocab = 151_936, layers = 28;
        // Per block: q, k, v, o, gate, up, down, two norms of d, q/k norms of 128.
        const long block = d * nq + 2 * d * nkv + nq * d + 3 * d * ff + 2 * d + 2 * 128;
        const long p = layers * block + vocab * d + d; // + tied embedding + output norm
        Assert.Equal(596_049_920, p); // Qwen3-0.6B's published 0.6B (0.44B without the embedding)
        var o = new TrainOptions { Model = "m.gguf", MicroBatchTokens = 4096, MaxPromptTokens = 512, MaxResponseTokens = 1024, Parallel = 64 };
        var plan = MemoryPlan.Compute(Qwen3_06B, o);
        Assert.Equal(p, plan.Model.ParameterCount);
        Assert.Equal(4 * p, plan[MemoryPart.Weights]);
        Assert.Equal(8 * p, plan[MemoryPart.AdamWState]);
        Assert.Equal(4 * p, plan[MemoryPart.Gradients]);
        Assert.Equal(0, plan[MemoryPart.ComputeCopies]);
        Assert.Equal(0, plan[MemoryPart.Lora]);
        // A micro-batch is the 4096-token budget (32 prompts x (512 + 8 x 1023) tokens are far more).
        Assert.Equal(4096, plan.MicroBatchTokens);
        const long perTokenBlock = 4 * (6 * d + 5 * nq + 2 * (nq + nkv) + 4 * ff);
        Assert.Equal(4096 * ((layers + 1) * perTokenBlock + 16 * d), plan[MemoryPart.Activations]);
        Assert.Equal(4096 * (layers * 4 * d + 2 * perTokenBlock + 16 * d), plan.ActivationsByCheckpointing.With);
        // LM head: four float32 [1024 x vocab] chunk buffers and the float32 [vocab x d] gradient.
        Assert.Equal(4 * 1024 * vocab * 4 + vocab * d * 4, plan[MemoryPart.LmHead]);
        // KV: 64 slots x (512 + 1024 rounded up to 1536) cells x 28 layers x 8 heads x (128 + 128) x 2 B.
        Assert.Equal(64L * 1536 * layers * 8 * 256 * 2, plan[MemoryPart.KvCache]);
        // llama.cpp: the F16 start model (norms F32) is larger than the Q8_0 sync (34 B per 32 weights).
        const long norms = layers * (2 * d + 2 * 128) + d;
        Assert.Equal((p - norms) * 2 + norms * 4, plan[MemoryPart.SamplerModel]);
        Assert.Equal((p - norms) / 32 * 34 + norms * 4, plan[MemoryPart.SyncReload]);
        Assert.Equal(PlanPhase.Update, plan.PeakPhase);
        Assert.Equal((long)(5.0 * 4 * p), plan[MemoryPart.TransientCopies]); // CPU only
        // The sampler sleeps through the update (default): its KV cache and buffers are not part of the update's peak;
        // the rollout phase has them and none of the update's own parts.
        MemoryPart[] context = [MemoryPart.KvCache, MemoryPart.SamplerBuffers];
        MemoryPart[] updateOnly = [MemoryPart.ComputeCopies, MemoryPart.Gradients, MemoryPart.Activations, MemoryPart.LmHead];
        Assert.Equal(plan.Items.Where(i => i.Part != MemoryPart.SyncReload && !context.Contains(i.Part)).Sum(i => i.Bytes), plan.PeakBytes);
        Assert.Equal(plan.Items.Where(i => i.Part != MemoryPart.SyncReload && !updateOnly.Contains(i.Part)).Sum(i => i.Bytes), plan.PhaseBytes(PlanPhase.Rollout));
        var awake = MemoryPlan.Compute(Qwen3_06B, o with { SamplerSleep = false });
        Assert.Equal(awake.Items.Where(i => i.Part != MemoryPart.SyncReload).Sum(i => i.Bytes), awake.PeakBytes);
        var offloaded = MemoryPlan.Compute(Qwen3_06B, o with { OffloadSampler = true });
        Assert.Equal(plan.PeakBytes - plan[MemoryPart.SamplerModel], offloaded.PhaseBytes(PlanPhase.Update));
        Assert.Equal(0, MemoryPlan.Compute(Qwen3_06B, o with { Device = "cuda" })[MemoryPart.TransientCopies]);
    }

    [Fact]
    public void Qwen3_06BBf16AndLoraByHand()
    {
        const long d = 1024, nq = 2048, nkv = 1024, ff = 3072, vocab = 151_936, layers = 28;
        var shape = Qwen3_06B;
        long p = shape.ParameterCount;
        var bf16 = MemoryPlan.Compute(shape, new TrainOptions { Model = "m", Dtype = TrainPrecision.BFloat16Mixed });
        Assert.Equal(4 * p, bf16[MemoryPart.Weights]); // the float32 masters
        Assert.Equal(8 * p, bf16[MemoryPart.AdamWState]);
        Assert.Equal(4 * p, bf16[MemoryPart.Gradients]);
        const long blockWeights = d * nq + 2 * d * nkv + nq * d + 3 * d * ff + 2 * d + 2 * 128;
        Assert.Equal(2 * (layers * blockWeights + vocab * d), bf16[MemoryPart.ComputeCopies]);
        Assert.Equal(2 * (6 * d + 5 * nq + 2 * (nq + nkv) + 4 * ff) + 2 * (2 * d + nq + nkv), MemoryPlan.ActivationBytesPerTokenPerBlock(shape.Config, 2));
        var pure = MemoryPlan.Compute(shape, new TrainOptions { Model = "m", Dtype = TrainPrecision.BFloat16Pure });
        Assert.Equal(2 * p, pure[MemoryPart.Weights]);
        Assert.Equal(4 * p, pure[MemoryPart.AdamWState]);

        // LoRA rank 16 on every projection: r x (in + out) per adapted weight; the adapted weights keep a base copy and
        // their full dL/dW (this LoRA's backward), the rest has no gradient and no AdamW state.
        var lora = MemoryPlan.Compute(shape, new TrainOptions { Model = "m", LoraRank = 16 });
        const long adaptedPerBlock = d * nq + 2 * d * nkv + nq * d + 3 * d * ff;
        const long adapters = layers * 16 * ((d + nq) + 2 * (d + nkv) + (nq + d) + 2 * (d + ff) + (ff + d));
        Assert.Equal(adapters, lora.TrainedParameters);
        Assert.Equal(0, lora[MemoryPart.AdamWState]);
        Assert.Equal(layers * adaptedPerBlock * 4, lora[MemoryPart.Gradients]);
        Assert.Equal(adapters * 16 + layers * adaptedPerBlock * 4, lora[MemoryPart.Lora]);
        Assert.Equal(4 * 1024 * vocab * 4, lora[MemoryPart.LmHead]); // no head gradient: the unembedding is frozen
        Assert.Equal(0, lora[MemoryPart.SyncReload]); // adapters are hot-swapped
        Assert.True(lora.PeakBytes < MemoryPlan.Compute(shape, new TrainOptions { Model = "m" }).PeakBytes);
    }

    [Fact]
    public void AdviceNamesWhatFits()
    {
        var o = new TrainOptions { Model = "m", MicroBatchTokens = 16384, MaxResponseTokens = 1024, Parallel = 16 };
        var plan = MemoryPlan.Compute(Qwen3_06B, o);
        Assert.Equal(PlanPhase.Update, plan.PeakPhase);
        var budget = plan.PeakBytes - plan[MemoryPart.Activations] + plan.ActivationsByCheckpointing.With + (1L << 20);
        Assert.True(plan.PhaseBytes(PlanPhase.Rollout) <= budget, "the rollout phase must fit for checkpointing alone to do");
        var advice = plan.Advise(budget);
        Assert.Contains(advice, a => a.Options == "--gradient-checkpointing");
        Assert.All(advice, a => Assert.True(a.PeakBytes <= budget));
        Assert.Empty(plan.Advise(plan.PeakBytes));
        Assert.Empty(plan.Advise(1L << 20)); // nothing fits in 1 MiB
        Assert.Throws<BupoException>(() => TrainingRun.CheckMemory(plan, 1L << 30, "1GiB"));
    }

    [Theory]
    [InlineData("24GiB", 24L << 30)]
    [InlineData("24 GB", 24_000_000_000L)]
    [InlineData("512MiB", 512L << 20)]
    [InlineData("1.5G", 3L << 29)]
    [InlineData("1000", 1000L)]
    public void MemorySizes(string text, long bytes) => Assert.Equal(bytes, ByteSize.Parse(text));

    // ------------------------------------------------------------------ CLI

    [Fact]
    public void PlanPrintsEveryPartAndAdvice()
    {
        var (code, stdout, err) = CliRunner.Run("plan", "--random", "qwen3-0.6b", "--device", "cuda", "--gpu-layers", "-1", "--memory", "24GiB",
            "--max-prompt-tokens", "512", "--max-response-tokens", "1024", "--micro-batch-tokens", "4096", "--dtype", "bf16");
        Assert.True(code == 0, err);
        foreach (var part in new[] { "fp32", "AdamW state", "gradients", "activations", "LM head", "LoRA", "llama.cpp model", "llama.cpp KV cache", "CUDA contexts" })
            Assert.Contains(part, stdout);
        Assert.Contains("fits in --memory 24GiB", stdout);
        Assert.Contains("rollout phase", stdout);
        // Awake through the update, the sampler's 10.5 GiB KV cache is too much; putting it to sleep is the advice.
        (code, stdout, err) = CliRunner.Run("plan", "--random", "qwen3-0.6b", "--device", "cuda", "--gpu-layers", "-1", "--memory", "24GiB",
            "--max-prompt-tokens", "512", "--max-response-tokens", "1024", "--micro-batch-tokens", "4096", "--dtype", "bf16", "--sampler-sleep", "false");
        Assert.True(code == 0, err);
        Assert.Contains("does not fit in --memory 24GiB", stdout);
        Assert.Contains("--sampler-sleep true", stdout);
        (code, stdout, err) = CliRunner.Run("plan", "--random", "qwen3-0.6b", "--memory", "1TiB", "--json");
        Assert.True(code == 0, err);
        using var doc = JsonDocument.Parse(stdout);
        Assert.True(doc.RootElement.GetProperty("fits").GetBoolean());
    }

    [Fact]
    public void BadInputIsOneLine()
    {
        var missing = Path.Combine(_dir, "missing.gguf");
        var (code, _, err) = CliRunner.Run("plan", "--model", missing);
        Assert.Equal(CliHost.Failure, code);
        Assert.Contains("missing.gguf", OneLine(err));
        (code, _, err) = CliRunner.Run("plan", "--random", "qwen3-0.6b", "--memory", "24XB");
        Assert.Equal(CliHost.UsageError, code);
        Assert.Contains("'24XB' is not a memory size", OneLine(err));
        (code, _, err) = CliRunner.Run("train", "--model", missing, "--dataset", "x.jsonl", "--memory", "lots");
        Assert.Equal(CliHost.UsageError, code);
        Assert.Contains("'lots' is not a memory size", OneLine(err));
        (code, _, err) = CliRunner.Run("plan", "--random", "qwen9-huge");
        Assert.Equal(CliHost.UsageError, code);
        Assert.Contains("qwen3-0.6b", OneLine(err));
        (code, _, err) = CliRunner.Run("plan");
        Assert.Equal(CliHost.Failure, code);
        Assert.Contains("exactly one of --model", OneLine(err));
        (code, _, err) = CliRunner.Run("plan", "--random", "qwen3-0.6b", "--lr", "-1");
        Assert.Equal(CliHost.Failure, code);
        Assert.Contains("--lr", OneLine(err));
    }

    [Fact]
    public void TrainRefusesWhatDoesNotFitBeforeLoading()
    {
        var model = TinyTrainingModels.StoriesShaped; // any model: the plan needs more than 100 MiB for every one
        var data = Path.Combine(_dir, "d.jsonl");
        File.WriteAllText(data, "{\"problem\": \"Once upon a time\", \"answer\": \"1\"}\n");
        var outDir = Path.Combine(_dir, "refused");
        var (code, _, err) = CliRunner.Run("train", "--model", model, "--dataset", data, "--output", outDir, "--memory", "100MiB");
        Assert.Equal(CliHost.Failure, code);
        var line = OneLine(err);
        Assert.Contains("--memory 100MiB: the memory plan needs", line);
        Assert.False(Directory.Exists(outDir)); // refused before anything was written or loaded
    }

    // ------------------------------------------------------------------ against measured peaks

    [Fact]
    public void PlanMatchesPeakRssOnStories260K()
    {
        var model = SharedAssets.RequireFile(SharedAssets.StoriesModel);
        CheckAgainstPeak(model, ["--prompt-template", "raw"], "{\"problem\": \"Once upon a time\", \"answer\": \"1\"}\n{\"problem\": \"One day\", \"answer\": \"2\"}\n");
    }

    /// <summary>A random qwen3 of 12.6M parameters (50 MB in float32; the file in F16) with a generated byte-level vocabulary:
    /// the model's own bytes are about half of the peak, beside the process overhead.</summary>
    [Fact]
    public void PlanMatchesPeakRssOnARandomQwen3() => CheckRandomQwen3("qwen3-plan", layers: 4, width: 512, heads: 8, kvHeads: 4, feedForward: 1536);

    /// <summary>
    /// Out of sample: the CPU's "late-freed copies" term (5 x the float32 weights) was fitted on the 4-block model above
    /// only; this one has 4x its parameters (8 blocks of width 768), so a term that merely absorbed that model's noise
    /// would miss here.
    /// </summary>
    [Fact]
    public void PlanMatchesPeakRssOnALargerRandomQwen3ItWasNotFittedOn() =>
        CheckRandomQwen3("qwen3-plan-large", layers: 8, width: 768, heads: 12, kvHeads: 4, feedForward: 2048);

    private void CheckRandomQwen3(string name, int layers, int width, int heads, int kvHeads, int feedForward)
    {
        var vocab = Path.Combine(_dir, "vocab.gguf");
        BenchVocab.Write(vocab);
        var model = Path.Combine(_dir, name + ".gguf");
        var spec = new RandomModelSpec
        {
            Architecture = "qwen3", Name = "random-" + name, Layers = layers, Embedding = width, Heads = heads, KvHeads = kvHeads, HeadDim = 64,
            FeedForward = feedForward, ContextLength = 2048, RopeBase = 1e6f, TensorType = GgmlType.F16,
        };
        RandomGgufModel.Write(model, spec, vocab);
        CheckAgainstPeak(model, ["--prompt-template", "raw"], "{\"problem\": \"the cat sat on the mat\", \"answer\": \"1\"}\n{\"problem\": \"one two three\", \"answer\": \"2\"}\n");
    }

    private void CheckAgainstPeak(string model, string[] extra, string dataset)
    {
        var data = Path.Combine(_dir, "peak.jsonl");
        File.WriteAllText(data, dataset);
        string[] settings =
        [
            "--model", model, "--steps", "2", "--prompts-per-step", "2", "--samples-per-prompt", "4", "--max-response-tokens", "16",
            "--max-prompt-tokens", "16", "--threads", "1", "--train-threads", "1", .. extra,
        ];
        var (code, stdout, err) = CliRunner.Run(["plan", .. settings, "--json"]);
        Assert.True(code == 0, err);
        long planned;
        using (var doc = JsonDocument.Parse(stdout)) planned = doc.RootElement.GetProperty("peak_bytes").GetInt64();
        // Two runs, the lower peak counts: when native memory goes back to the system varies run to run (713-862 MiB over
        // eight runs of one setting, more beside other test processes), and that noise only ever adds to a peak.
        var peaks = new List<long>();
        var sw = Stopwatch.StartNew();
        for (var run = 0; run < 2; run++)
        {
            var outDir = Path.Combine(_dir, $"run-{Path.GetFileNameWithoutExtension(model)}-{run}");
            var (trainCode, trainOut, trainErr) = CliRunner.RunChild(["train", .. settings, "--dataset", data, "--output", outDir]);
            Assert.True(trainCode == 0, trainErr + trainOut);
            var m = Regex.Match(trainOut, @"peak memory: .* \((\d+) bytes, VmHWM\)");
            if (!m.Success) Assert.Skip("train reported no peak memory (no /proc/self/status on this OS)");
            peaks.Add(long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture));
        }
        var measured = peaks.Min();
        var error = Math.Abs(planned - measured) / (double)measured;
        output.WriteLine($"{Path.GetFileName(model)}: plan {ByteSize.Format(planned)} ({planned}), measured VmHWM {string.Join(" and ", peaks.Select(ByteSize.Format))} " +
                         $"(lower {measured}), error {error:P1}, two trains {sw.Elapsed.TotalSeconds:0.0} s");
        Assert.True(error <= 0.15, $"plan {planned} vs measured {measured}: {error:P1} off");
    }
}
