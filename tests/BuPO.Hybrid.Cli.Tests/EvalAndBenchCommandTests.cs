using System.CommandLine;
using System.Text.Json;
using BuPO.Hybrid.Cli;
using BuPO.Hybrid.Cli.Commands;
using BuPO.Hybrid.Tests.Support;

namespace BuPO.Hybrid.Cli.Tests;

[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class LlamaCliCollection
{
    public const string Name = "cli commands running llama.cpp";
}

[Collection(LlamaCliCollection.Name)]
public class EvalAndBenchCommandTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"bupo-cli-eval-{Guid.NewGuid():N}");

    public EvalAndBenchCommandTests() => Directory.CreateDirectory(_dir);

    public void Dispose()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    private static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    private static string OneLine(string err) => Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries));

    private string Jsonl(params (string Problem, string Answer)[] rows)
    {
        var path = Path.Combine(_dir, "small.jsonl");
        File.WriteAllLines(path, rows.Select(r => JsonSerializer.Serialize(new { problem = r.Problem, answer = r.Answer })));
        return path;
    }

    [Fact]
    public void EvalBadInputsAreOneLineErrors()
    {
        var model = Path.Combine(_dir, "no-model.gguf");
        var data = Jsonl(("1+1", "2"));
        var (code, _, err) = Run("eval", "--model", model, "--dataset", Path.Combine(_dir, "missing.jsonl"));
        Assert.Equal(CliHost.Failure, code);
        Assert.Contains("dataset file not found", OneLine(err));
        (code, _, err) = Run("eval", "--model", model, "--dataset", "nosuchset");
        Assert.Equal(CliHost.Failure, code);
        Assert.Contains("unknown dataset 'nosuchset'", OneLine(err));
        (code, _, err) = Run("eval", "--model", model, "--dataset", data, "--k", "0");
        Assert.Equal(CliHost.Failure, code);
        Assert.Contains("--k must be >= 1", OneLine(err));
        (code, _, err) = Run("eval", "--model", model, "--dataset", data, "--k", "abc");
        Assert.Equal(CliHost.UsageError, code);
        OneLine(err);
        (code, _, err) = Run("eval", "--model", model, "--dataset", data, "--k", "4", "--pass-k", "1,8");
        Assert.Equal(CliHost.Failure, code);
        Assert.Contains("--pass-k: 8", OneLine(err));
        // --device without --policy-layer used to be ignored in silence (llama.cpp samples there).
        (code, _, err) = Run("eval", "--model", model, "--dataset", data, "--device", "cuda");
        Assert.Equal(CliHost.Failure, code);
        Assert.Contains("--device applies to --policy-layer", OneLine(err));
        (code, _, err) = Run("eval", "--model", model, "--dataset", data, "--template", "fancy");
        Assert.Contains("unknown prompt template 'fancy'", OneLine(err));
        (code, _, err) = Run("eval", "--model", model, "--dataset", data);
        Assert.Equal(CliHost.Failure, code);
        Assert.Contains("not found", OneLine(err));                  // the model file, after the cheap checks
        (code, _, err) = Run("eval", "--dataset", data);
        Assert.Equal(CliHost.UsageError, code);
        Assert.Contains("--model", OneLine(err));
        var noAnswer = Path.Combine(_dir, "noanswer.jsonl");
        File.WriteAllText(noAnswer, "{\"problem\": \"1+1\"}\n");
        (code, _, err) = Run("eval", "--model", model, "--dataset", noAnswer);
        Assert.Contains("no reference answer", OneLine(err));
    }

    [Fact]
    public void BenchBadInputsAreOneLineErrors()
    {
        var (code, _, err) = Run("bench", "rollout");
        Assert.Equal(CliHost.Failure, code);
        Assert.Contains("exactly one of --model M.gguf or --random NAME", OneLine(err));
        (code, _, err) = Run("bench", "rollout", "--random", "gpt-17");
        Assert.Contains("unknown model shape 'gpt-17'", OneLine(err));
        (code, _, err) = Run("bench", "rollout", "--random", "llama-tiny", "--batch", "1,x");
        Assert.Contains("--batch: 'x'", OneLine(err));
        (code, _, err) = Run("bench", "rollout", "--random", "llama-tiny", "--batch", "1,300");
        Assert.Contains("--batch: 300", OneLine(err));
        (code, _, err) = Run("bench", "rollout", "--model", Path.Combine(_dir, "none.gguf"));
        Assert.Contains("not found", OneLine(err));
        (code, _, err) = Run("bench", "rollout", "--random", "llama-tiny", "--kv", "paged");
        Assert.Contains("--kv", OneLine(err));
    }

    [Fact]
    public void BenchRolloutOnARandomTinyModel()
    {
        // llama-tiny with the generated vocabulary when ../shared is absent, the Qwen2 vocabulary otherwise: works on a fresh clone
        var json = Path.Combine(_dir, "bench.json");
        // --type: the rollout bench's older name of the shared --random-type
        var (code, stdout, err) = Run("bench", "rollout", "--random", "llama-tiny", "--type", "q8_0", "--cache-dir", _dir, "--batch", "1,3", "--prompt-tokens", "8",
            "--gen-tokens", "6", "--threads", "1", "--sampling-threads", "1", "--json", json);
        Assert.True(code == 0, err);
        Assert.Contains("engine/raw", stdout);
        Assert.Contains("random llama-tiny (Q8_0)", stdout);
        Assert.Contains(_dir, stdout);
        using var doc = JsonDocument.Parse(File.ReadAllText(json));
        var rows = doc.RootElement.GetProperty("rows");
        Assert.Equal(2, rows.GetArrayLength());
        Assert.Equal(3, rows[1].GetProperty("batch").GetInt32());
        Assert.Equal(18, rows[1].GetProperty("generated_tokens").GetInt64());
        Assert.True(rows[1].GetProperty("raw_tokens_per_second").GetDouble() > 0);
        Assert.True(rows[1].GetProperty("engine_tokens_per_second").GetDouble() > 0);
        Assert.Equal("llama-tiny", doc.RootElement.GetProperty("random_shape").GetString());
        Assert.Contains("tokens)", doc.RootElement.GetProperty("vocab").GetString());
    }
}
