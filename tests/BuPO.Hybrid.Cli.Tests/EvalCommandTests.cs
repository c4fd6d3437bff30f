using System.Text.Json;

namespace BuPO.Hybrid.Cli.Tests;

/// <summary><c>bupo-hybrid eval</c> end to end on a model whose answers are known (<see cref="BoxedAnswerModel"/>).</summary>
[Collection(LlamaCliCollection.Name)]
public sealed class EvalCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("bupo-cli-eval-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    [Fact]
    public void EvalWritesTableAndJson()
    {
        // The model answers \boxed{4} to everything: with --limit 2 the first problem (4) is right in all 4 samples and the
        // second (6) in none, so avg@4 = pass@k = 0.5 for both datasets. Scoring that is not wired, or is always wrong, gives 0.
        var model = BoxedAnswerModel.Write(_dir);
        var data = Path.Combine(_dir, "small.jsonl");
        File.WriteAllLines(data, new[] { ("2+2", "4"), ("3+3", "6"), ("1+2", "3") }.Select(r => JsonSerializer.Serialize(new { problem = r.Item1, answer = r.Item2 })));
        var json = Path.Combine(_dir, "eval.json");
        var (code, stdout, err) = CliRunner.Run("eval", "--model", model, "--dataset", data, "--dataset", data, "--k", "4", "--limit", "2",
            "--max-tokens", "9", "--parallel", "4", "--threads", "1", "--seed", "7", "--json", json);
        Assert.True(code == 0, err);
        Assert.Contains("avg@4", stdout);
        Assert.Contains("pass@4", stdout);
        Assert.Contains("average", stdout);   // two datasets
        using var doc = JsonDocument.Parse(File.ReadAllText(json));
        var root = doc.RootElement;
        Assert.Equal(4, root.GetProperty("k").GetInt32());
        Assert.Equal("boxed", root.GetProperty("template").GetString());
        Assert.Equal(0.5, root.GetProperty("average_avg_at_k").GetDouble(), 12);
        var ds = root.GetProperty("datasets");
        Assert.Equal(2, ds.GetArrayLength());
        foreach (var d in ds.EnumerateArray())
        {
            Assert.Equal(2, d.GetProperty("problems").GetInt32());
            Assert.Equal(8, d.GetProperty("total_samples").GetInt32());
            Assert.Equal(4, d.GetProperty("total_correct").GetInt32());
            Assert.Equal(0.5, d.GetProperty("avg_at_k").GetDouble(), 12);
            Assert.Equal(["1", "2", "4"], d.GetProperty("pass_at_k").EnumerateObject().Select(p => p.Name));
            Assert.All(d.GetProperty("pass_at_k").EnumerateObject(), p => Assert.Equal(0.5, p.Value.GetDouble(), 12));
            Assert.Equal(72, d.GetProperty("generated_tokens").GetInt64());
            var problems = d.GetProperty("per_problem");
            Assert.Equal("4", problems[0].GetProperty("answer").GetString());
            Assert.Equal(4, problems[0].GetProperty("correct").GetInt32());
            Assert.All(problems[0].GetProperty("correct_by_sample").EnumerateArray(), c => Assert.True(c.GetBoolean()));
            Assert.Equal("6", problems[1].GetProperty("answer").GetString());
            Assert.Equal(0, problems[1].GetProperty("correct").GetInt32());
            foreach (var p in problems.EnumerateArray())
            {
                Assert.All(p.GetProperty("extracted").EnumerateArray(), x => Assert.Equal("4", x.GetString()));
                Assert.All(p.GetProperty("response_tokens").EnumerateArray(), t => Assert.Equal(9, t.GetInt32()));
                Assert.All(p.GetProperty("finish").EnumerateArray(), f => Assert.Equal("MaxTokens", f.GetString()));
            }
        }
    }
}
