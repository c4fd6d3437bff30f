using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using BuPO.Hybrid.Cli;
using BuPO.Hybrid.Cli.Commands;
using BuPO.Hybrid.Demo;
using BuPO.Hybrid.RL.Training;

namespace BuPO.Hybrid.Cli.Tests;

[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class DemoCliCollection
{
    public const string Name = "demo command";
}

/// <summary>Runs <c>demo --quick</c> end to end (about 1.5 minutes on 2 busy CPU cores).</summary>
[Collection(DemoCliCollection.Name)]
public sealed class DemoCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("bupo-demo-cli-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    private static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    private static JsonElement Load(string path)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        return doc.RootElement.Clone();
    }

    [Fact]
    public void BadLayerIsOneLineError()
    {
        var (code, _, err) = Run("demo", "--quick", "--workdir", Path.Combine(_dir, "w"), "--out", Path.Combine(_dir, "o"), "--bupo-layer", "99");
        Assert.Equal(CliHost.Failure, code);
        var line = Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("--bupo-layer 99", line);
    }

    [Theory]
    [InlineData("--rl-steps", "0", "--rl-steps must be >= 1")]
    [InlineData("--group-size", "1", "--group-size must be >= 2")]
    [InlineData("--prompts-per-step", "-3", "--prompts-per-step must be >= 1")]
    [InlineData("--rl-lr", "-0.1", "--rl-lr must be a positive number")]
    [InlineData("--bupo-steps", "99", "--bupo-steps (99) must be <= the RL steps")]
    [InlineData("--eval-problems", "0", "--eval-problems must be >= 1")]
    [InlineData("--sft-flaw-share", "1.5", "--sft-flaw-share must be in [0, 1), got 1.5")]
    public void BadOverrideIsOneLineError(string option, string value, string message)
    {
        var (code, _, err) = Run("demo", "--quick", "--workdir", Path.Combine(_dir, "w"), "--out", Path.Combine(_dir, "o"), option, value);
        Assert.Equal(CliHost.Failure, code);
        var line = Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains(message, line);
        Assert.False(Directory.Exists(Path.Combine(_dir, "o")), "nothing is written before the options are checked");
    }

    [Fact]
    public void UnknownFlawIsOneLineUsageError()
    {
        var (code, _, err) = Run("demo", "--quick", "--workdir", Path.Combine(_dir, "w"), "--out", Path.Combine(_dir, "o"), "--sft-flaw", "Bogus");
        Assert.Equal(CliHost.UsageError, code);
        var line = Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("--sft-flaw Bogus: expected one of None, DropLastStep, StaleBox", line);
        Assert.False(Directory.Exists(Path.Combine(_dir, "o")), "nothing is written before the options are checked");
    }

    [Fact]
    public void OverridesReplaceOnlyTheirProfileValues()
    {
        var args = new DemoSettings { Out = "o", WorkDir = "w", RlSteps = 7, RlLr = 5e-5, BupoSteps = 3, GroupSize = 4, PromptsPerStep = 6, EvalProblems = 11 };
        var p = DemoProfile.Default.With(args);
        Assert.Equal((7, 5e-5, 3, 4, 6, 11), (p.RlSteps, p.RlLr, p.BupoSteps, p.RlSamplesPerPrompt, p.RlPromptsPerStep, p.EvalProblems));
        // A mini-batch larger than the (smaller) prompts per step shrinks to it unless it was given explicitly.
        Assert.Equal(DemoProfile.Default with { RlSteps = 7, RlLr = 5e-5, BupoSteps = 3, RlSamplesPerPrompt = 4, RlPromptsPerStep = 6, EvalProblems = 11, RlMiniBatchPrompts = 6 }, p);
        var mb = DemoProfile.Default.With(args with { MiniBatchPrompts = 2, PpoEpochs = 3 });
        Assert.Equal((2, 3), (mb.RlMiniBatchPrompts, mb.RlPpoEpochs));
        Assert.Throws<BupoException>(() => DemoProfile.Default.With(args with { MiniBatchPrompts = 7 }));
        Assert.Equal(DemoProfile.Quick, DemoProfile.Quick.With(new DemoSettings { Out = "o", WorkDir = "w" }));
    }

    [Fact]
    public void QuickDemoRunsEveryStageAndWritesAConsistentReport()
    {
        var work = Path.Combine(_dir, "work");
        var outDir = Path.Combine(_dir, "out");
        var (code, stdout, err) = Run("demo", "--quick", "--workdir", work, "--out", outDir, "--seed", "1");
        Assert.True(code == 0, err + stdout);

        // every stage ran
        foreach (var stage in new[] { "✓ SFT", "✓ analyze SFT", "✓ grpo", "✓ bupo", "✓ evaluate", "✓ evaluate layer", "✓ analyze trained", "✓ report" })
            Assert.Contains(stage, stdout);
        var stages = Load(Path.Combine(outDir, "stages.json")).EnumerateArray().Select(s => s.GetProperty("stage").GetString()).ToList();
        var kk = Load(Path.Combine(outDir, "results.json")).GetProperty("bupo_layer").GetInt32();
        Assert.Equal(["SFT", "analyze SFT", "grpo", "bupo", "evaluate", $"evaluate layer {kk}", "analyze trained", "report"], stages);

        // every report file exists
        string[] files =
        [
            "report.md", "results.json", "results.csv", "stages.json", "heldout.jsonl", "sft_metrics.csv",
            "reward_curves.png", "accuracy_curves.png", "layer_entropy.png",
            "eval_init.json", "eval_sft.json", "eval_grpo.json", "eval_bupo.json",
            "layer_eval_sft.json", "layer_eval_grpo.json", "layer_eval_bupo.json", "grpo/tensorboard",
            "analysis_sft.json", "analysis_sft.csv", "analysis_sft_entropy.png", "analysis_grpo.json", "analysis_bupo.json",
            "grpo/metrics.jsonl", "grpo/metrics.csv", "bupo/metrics.jsonl", "bupo/metrics.csv",
        ];
        foreach (var f in files)
        {
            var path = Path.Combine(outDir, f);
            if (Directory.Exists(path)) { Assert.NotEmpty(Directory.GetFiles(path)); continue; }
            Assert.True(File.Exists(path), $"missing {f}");
            Assert.True(new FileInfo(path).Length > 0, $"empty {f}");
        }
        Assert.True(Directory.EnumerateFiles(work, "sft.gguf", SearchOption.AllDirectories).Any(), "the SFT model is cached in the work dir");

        // SFT learned: clearly above the untrained random-init model (which never answers correctly)
        var init = Load(Path.Combine(outDir, "eval_init.json"));
        var sft = Load(Path.Combine(outDir, "eval_sft.json"));
        Assert.True(sft.GetProperty("avg_at_k").GetDouble() >= init.GetProperty("avg_at_k").GetDouble() + 0.04,
            $"SFT avg@k {sft.GetProperty("avg_at_k").GetDouble()} vs init {init.GetProperty("avg_at_k").GetDouble()}");
        Assert.True(sft.GetProperty("pass_at_k").GetProperty("4").GetDouble() >= 0.15);
        Assert.True(sft.GetProperty("finished_share").GetDouble() > 0.9, "SFT answers end with EOS");

        // the report's numbers are the metrics files' values
        var report = File.ReadAllText(Path.Combine(outDir, "report.md"));
        var results = Load(Path.Combine(outDir, "results.json"));
        var k = results.GetProperty("k").GetInt32();
        var rows = results.GetProperty("rows").EnumerateArray().ToList();
        var heldSteps = File.ReadLines(Path.Combine(outDir, "heldout.jsonl")).Select(l => JsonDocument.Parse(l).RootElement.GetProperty("steps").GetInt32()).ToList();
        Assert.Equal(4, rows.Count);
        foreach (var row in rows)
        {
            var model = row.GetProperty("Model").GetString()!;
            var e = Load(Path.Combine(outDir, DemoPipeline.EvalFile(model)));
            var pass = e.GetProperty("pass_at_k");
            var avg = e.GetProperty("avg_at_k").GetDouble();
            Assert.Equal(avg, row.GetProperty("AvgAtK").GetDouble());
            var line = $"| {model} | {DemoPipeline.F(avg)} | {DemoPipeline.F(pass.GetProperty("1").GetDouble())} | "
                + $"{DemoPipeline.F(pass.GetProperty(k.ToString(CultureInfo.InvariantCulture)).GetDouble())} | {DemoPipeline.F(e.GetProperty("finished_share").GetDouble())} |";
            Assert.Contains(line, report);
            Assert.Contains(DemoPipeline.F(avg), stdout);
            // avg@K per operation count: the held-out problems of each count, weighted by how many there are
            var bySteps = e.GetProperty("avg_at_k_by_steps").EnumerateObject().ToDictionary(x => int.Parse(x.Name, CultureInfo.InvariantCulture), x => x.Value.GetDouble());
            Assert.Equal(heldSteps.Distinct().Order(), bySteps.Keys.Order());
            Assert.Equal(avg, bySteps.Sum(kv => kv.Value * heldSteps.Count(s => s == kv.Key)) / heldSteps.Count, 9);
            var shortShare = e.GetProperty("short_share").GetDouble();
            Assert.InRange(shortShare, 0, 1);
            var stale = e.GetProperty("stale_box_share").GetDouble();
            Assert.InRange(stale, 0, 1);
            Assert.Contains($"| {model} | " + string.Join(" | ", bySteps.OrderBy(kv => kv.Key).Select(kv => DemoPipeline.F(kv.Value))) + $" | {DemoPipeline.F(shortShare)} | {DemoPipeline.F(stale)} |", report);
        }
        var grpo = MetricsWriter.ReadSteps(Path.Combine(outDir, "grpo", "metrics.jsonl"));
        var bupo = MetricsWriter.ReadSteps(Path.Combine(outDir, "bupo", "metrics.jsonl"));
        Assert.Equal(grpo.Count, bupo.Count);
        Assert.All(grpo, m => Assert.Equal("grpo", m.Phase));
        Assert.Equal("ipa", bupo[0].Phase);
        Assert.Equal("grpo", bupo[^1].Phase);
        Assert.Contains($"Final step reward: GRPO {DemoPipeline.F(grpo[^1].RewardMean)}, BuPO {DemoPipeline.F(bupo[^1].RewardMean)}.", report);
        var analysis = Load(Path.Combine(outDir, "analysis_sft.json"));
        var layers = analysis.GetProperty("layers").EnumerateArray().ToList();
        Assert.Contains($"| 0 | {DemoPipeline.F(layers[0].GetProperty("entropy").GetDouble())} |", report);
        Assert.Contains($"block k = {results.GetProperty("bupo_layer").GetInt32()}", report);
        // block k's internal policy evaluated as a policy, for SFT, GRPO and BuPO, in the report as in its files
        foreach (var m in new[] { "SFT", "GRPO", "BuPO" })
        {
            var le = Load(Path.Combine(outDir, "layer_" + DemoPipeline.EvalFile(m)));
            Assert.Equal(2, le.GetProperty("samples_per_problem").GetInt32());
            Assert.Contains($"| {m} | {DemoPipeline.F(le.GetProperty("avg_at_k").GetDouble())} |", report);
        }

        // a second run reuses the cached SFT model
        var (code2, stdout2, err2) = Run("demo", "--quick", "--workdir", work, "--out", Path.Combine(_dir, "out2"), "--seed", "1");
        Assert.True(code2 == 0, err2 + stdout2);
        Assert.Contains("reused cached model", stdout2);
    }
}
