using System.CommandLine;
using System.Text.Json;
using BuPO.Hybrid.Cli;
using BuPO.Hybrid.Cli.Commands;
using BuPO.Hybrid.Tests.Support;

namespace BuPO.Hybrid.Cli.Tests;

[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class TrainCliCollection
{
    public const string Name = "train command";
}

[Collection(TrainCliCollection.Name)]
public sealed class TrainCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("bupo-train-cli-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    private static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    private static string OneLine(string err) => Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries));

    private string Write(string name, string text)
    {
        var p = Path.Combine(_dir, name);
        File.WriteAllText(p, text);
        return p;
    }

    /// <summary>Small-run settings for stories260K (CPU, one thread each side).</summary>
    private string[] Small(string output, params string[] more) =>
    [
        "train", "--model", TinyTrainingModels.StoriesShaped, "--output", output, "--steps", "1",
        "--prompts-per-step", "2", "--samples-per-prompt", "4", "--max-response-tokens", "12", "--threads", "1", "--train-threads", "1",
        "--lr", "1e-3", "--prompt-template", "raw", .. more,
    ];

    [Fact]
    public void PrintConfigShowsFileValuesAndOverrides()
    {
        var cfg = Write("cfg.json", """{"model": "m.gguf", "lr": 0.002, "bupo-layer": 5, "steps": 40}""");
        var (code, output, err) = Run("train", "--config", cfg, "--steps", "12", "--tis", "false", "--print-config");
        Assert.True(code == 0, err);
        using var doc = JsonDocument.Parse(output);
        var r = doc.RootElement;
        Assert.Equal(0.002, r.GetProperty("lr").GetDouble());
        Assert.Equal(12, r.GetProperty("steps").GetInt32());
        Assert.Equal("5", r.GetProperty("bupo-layer").GetString());
        Assert.Equal(30, r.GetProperty("bupo-steps").GetInt32()); // resolved: 30 once a layer is set
        Assert.False(r.GetProperty("tis").GetBoolean());
        Assert.Equal(0.01, r.GetProperty("weight-decay").GetDouble());
        // A bare flag means true.
        (code, output, _) = Run("train", "--model", "m.gguf", "--gradient-checkpointing", "--print-config");
        Assert.Equal(0, code);
        using var doc2 = JsonDocument.Parse(output);
        Assert.True(doc2.RootElement.GetProperty("gradient-checkpointing").GetBoolean());
    }

    [Fact]
    public void UnknownConfigKeyIsOneLineError()
    {
        var cfg = Write("bad.json", """{"model": "m.gguf", "lrr": 0.1}""");
        var output = Path.Combine(_dir, "out-key");
        var (code, _, err) = Run("train", "--config", cfg, "--dataset", "x.jsonl", "--output", output);
        Assert.Equal(CliHost.Failure, code);
        var line = OneLine(err);
        Assert.Contains("unknown config key 'lrr'", line);
        Assert.False(Directory.Exists(output));
    }

    [Fact]
    public void BadInputsAreOneLineErrorsWithoutCheckpoints()
    {
        var model = TinyTrainingModels.StoriesShaped; // 5 blocks, as stories260K: --bupo-layer 7 is out of range
        var noField = Write("nofield.jsonl", "{\"question\": \"Once upon a time\", \"answer\": \"1\"}\n{\"prompt_text\": \"One day\", \"answer\": \"2\"}\n");
        var good = Write("good.jsonl", "{\"problem\": \"Once upon a time\", \"answer\": \"1\"}\n");
        var cases = new (string[] Args, string Expect)[]
        {
            (["--dataset", Path.Combine(_dir, "missing.jsonl")], "not found"),
            (["--dataset", noField, "--field", "question"], "nofield.jsonl:2"),
            (["--dataset", good, "--bupo-layer", "7"], "--bupo-layer 7"),
            (["--dataset", good, "--rollout-quant", "Q9_9"], "--rollout-quant"),
            (["--dataset", good, "--clip-low", "1.5"], "--clip-low"),
        };
        var i = 0;
        foreach (var (args, expect) in cases)
        {
            var output = Path.Combine(_dir, $"out-bad-{i++}");
            var (code, _, err) = Run(["train", "--model", model, "--output", output, .. args]);
            Assert.Equal(CliHost.Failure, code);
            var line = OneLine(err);
            Assert.StartsWith("error:", line);
            Assert.Contains(expect, line);
            Assert.False(Directory.Exists(Path.Combine(output, "checkpoints")), $"{expect}: a checkpoint folder was made");
        }
    }

    [Fact]
    public void AutoLayerRunRecordsTheLayerAndCurve()
    {
        var data = Write("stories.jsonl", "{\"problem\": \"Once upon a time\", \"answer\": \"1\"}\n{\"problem\": \"One day\", \"answer\": \"2\"}\n");
        var output = Path.Combine(_dir, "auto");
        var (code, stdout, err) = Run(Small(output, "--dataset", data, "--bupo-layer", "auto", "--auto-layer-prompts", "2", "--auto-layer-max-tokens", "12"));
        Assert.True(code == 0, err + stdout);
        Assert.Contains("bupo-layer auto: k = ", stdout);
        Assert.Contains("step 1/1 [ipa k=", stdout);
        var lines = File.ReadAllLines(Path.Combine(output, "metrics.jsonl"));
        using var first = JsonDocument.Parse(lines[0]);
        Assert.Equal("bupo_layer_auto", first.RootElement.GetProperty("event").GetString());
        var k = first.RootElement.GetProperty("layer").GetInt32();
        Assert.InRange(k, 0, 4);
        Assert.Equal(5, first.RootElement.GetProperty("delta_ffn").GetArrayLength());
        using var step = JsonDocument.Parse(lines[1]);
        Assert.Equal(k, step.RootElement.GetProperty("bupo_layer").GetInt32());
        Assert.True(File.Exists(Path.Combine(output, "config.json")));
        Assert.True(Directory.Exists(Path.Combine(output, "checkpoints", "step-000001")));
    }
    [Fact]
    public void DuplicateConfigKeysAreAnError()
    {
        // As found: the last of two "lr" keys won silently.
        var cfg = Write("dup.json", """{"model": "m.gguf", "lr": 0.1, "lr": 0.2}""");
        var (code, _, err) = Run("train", "--config", cfg, "--print-config");
        Assert.Equal(CliHost.Failure, code);
        Assert.Contains("the key 'lr' appears twice", OneLine(err));
    }

    [Fact]
    public void ResumeTakesTheCheckpointsSettingsWithoutRepeatingThem()
    {
        var data = Write("resume.jsonl", "{\"problem\": \"Once upon a time\", \"answer\": \"1\"}\n{\"problem\": \"One day\", \"answer\": \"2\"}\n");
        var output = Path.Combine(_dir, "resume");
        var (code, stdout, err) = Run(Small(output, "--dataset", data, "--seed", "3"));
        Assert.True(code == 0, err + stdout);
        // Only --resume, --output and the new step count: model, dataset, seed and the rest come from the checkpoint.
        (code, stdout, err) = Run("train", "--resume", "latest", "--output", output, "--steps", "2");
        Assert.True(code == 0, err + stdout);
        Assert.Contains("step 2/2", stdout);
        using (var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "config.json"))))
            Assert.Equal(3, config.RootElement.GetProperty("seed").GetInt64());
        // A setting that would change the run is one line naming it.
        (code, _, err) = Run("train", "--resume", "latest", "--output", output, "--steps", "3", "--samples-per-prompt", "2");
        Assert.Equal(CliHost.Failure, code);
        Assert.Contains("--samples-per-prompt is 2 here but 4", OneLine(err));
    }

    [Theory]
    [InlineData("train", "--steps", "many")] // int
    [InlineData("train", "--lr", "fast")] // double
    [InlineData("train", "--dtype", "fp16")] // choice (enum)
    [InlineData("train", "--loss-agg", "sum")] // choice (enum)
    [InlineData("plan", "--micro-batch-tokens", "4k")] // plan takes the same typed options
    public void MalformedValuesAreUsageErrorsNamingTheOption(string command, string option, string value)
    {
        var output = Path.Combine(_dir, "out-usage");
        var (code, _, err) = Run(command, "--model", "m.gguf", "--dataset", "x.jsonl", "--output", output, option, value);
        Assert.Equal(CliHost.UsageError, code);
        var line = OneLine(err);
        Assert.StartsWith("error:", line);
        Assert.Contains(option, line);
        Assert.Contains(value, line);
        Assert.False(Directory.Exists(output));
    }

    [Fact]
    public void AWrongTypedConfigValueIsOneLineNamingTheFileAndKey()
    {
        var cfg = Write("typed.json", """{"model": "m.gguf", "steps": "many"}""");
        var (code, _, err) = Run("train", "--config", cfg, "--print-config");
        Assert.Equal(CliHost.Failure, code);
        var line = OneLine(err);
        Assert.Contains(cfg, line);
        Assert.Contains("'steps': expected an integer", line);
    }

    [Fact]
    public void ChoicesAcceptTheirAliasesAndPrintTheCanonicalName()
    {
        var (code, output, err) = Run("train", "--model", "m.gguf", "--dtype", "BFloat16", "--loss-agg", "seq-mean-token-mean", "--print-config");
        Assert.True(code == 0, err);
        using var doc = JsonDocument.Parse(output);
        Assert.Equal("bf16", doc.RootElement.GetProperty("dtype").GetString());
        Assert.Equal("seq-mean-token-mean", doc.RootElement.GetProperty("loss-agg").GetString());
    }

    [Fact]
    public void EverySettingIsATypedOptionWithItsDefaultInTheHelp()
    {
        var options = TrainCommand.Create().Options.ToDictionary(o => o.Name);
        Assert.All(RL.Training.TrainSettings.All, s => Assert.Contains("--" + s.Name, options.Keys));
        Assert.IsType<Option<int>>(options["--steps"]);
        Assert.IsType<Option<double>>(options["--lr"]);
        Assert.IsType<Option<bool>>(options["--tis"]);
        Assert.IsType<Option<long>>(options["--seed"]);
        Assert.IsType<Option<int?>>(options["--limit"]);
        Assert.IsType<Option<Model.TrainPrecision>>(options["--dtype"]);
        Assert.IsType<Option<RL.Algorithms.LossAggregation>>(options["--loss-agg"]);
        Assert.EndsWith("(default 300)", options["--steps"].Description);
        Assert.EndsWith("(default 1E-06)", options["--lr"].Description);
        Assert.EndsWith("(default true)", options["--tis"].Description);
        Assert.EndsWith("(default float32)", options["--dtype"].Description);
        Assert.EndsWith("(default token-mean)", options["--loss-agg"].Description);
        Assert.DoesNotContain("(default", options["--model"].Description);
        Assert.EndsWith("(repeatable)", options["--stop"].Description);
    }
}

