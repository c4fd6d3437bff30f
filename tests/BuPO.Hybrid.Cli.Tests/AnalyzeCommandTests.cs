using System.CommandLine;
using System.Text.Json;
using BuPO.Hybrid.Cli;
using BuPO.Hybrid.Cli.Commands;
using BuPO.Hybrid.Gguf;
using BuPO.Hybrid.Tests.Support;

namespace BuPO.Hybrid.Cli.Tests;

[Collection("analyze-cli")]
public class AnalyzeCommandTests
{
    private static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(["analyze", .. args]);

    private static string OneLine(string err) => Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries));

    /// <summary>A random model of stories260K's shape (5 blocks, width 64, 512-token SentencePiece vocabulary): runs without ../shared.</summary>
    private static string Model => TinyTrainingModels.StoriesShaped;

    private static void AssertOneLineError((int Code, string Out, string Err) r, params string[] contains)
    {
        Assert.NotEqual(0, r.Code);
        var line = OneLine(r.Err);
        Assert.StartsWith("error:", line);
        foreach (var c in contains) Assert.Contains(c, line);
    }

    [Fact]
    public void EndToEndWritesJsonCsvAndPlots()
    {
        var dir = Directory.CreateTempSubdirectory("bupo-analyze-cli-").FullName;
        try
        {
            var json = Path.Combine(dir, "sub", "result.json");
            var (code, output, err) = Run("--model", Model, "--prompt", "Once upon a time", "--prompt", "Lily saw a cat.", "--out", dir,
                "--json", json, "--threads", "1", "--engine", "torch");
            Assert.True(code == 0, err);
            Assert.Contains("boundary layer", output);
            Assert.Contains("tokens/s", output);
            foreach (var f in new[] { "analysis.json", "analysis.csv", "analysis_entropy.png", "analysis_entropy.svg", "analysis_flow.png", "analysis_delta.png", "analysis_heatmap.png", "analysis_heatmap.svg" })
                Assert.True(new FileInfo(Path.Combine(dir, f)).Length > 100, f);
            using var doc = JsonDocument.Parse(File.ReadAllText(json));
            var root = doc.RootElement;
            Assert.Equal("llama", root.GetProperty("architecture").GetString());
            Assert.Equal("torch", root.GetProperty("engine").GetString());
            Assert.Equal("none", root.GetProperty("norm").GetString());
            Assert.Equal(5, root.GetProperty("n_layer").GetInt32());
            Assert.Equal(2, root.GetProperty("token_ids").GetArrayLength());
            Assert.Equal(1, root.GetProperty("token_ids")[0][0].GetInt32()); // BOS: the vocabulary adds it
            Assert.False(root.TryGetProperty("per_token", out _)); // only with --per-token
            var layers = root.GetProperty("layers");
            Assert.Equal(5, layers.GetArrayLength());
            foreach (var key in new[] { "index", "entropy", "entropy_std", "attention_entropy", "ffn_entropy", "attention_input_entropy", "ffn_input_entropy", "delta_layer", "delta_attention", "delta_ffn" })
                Assert.True(layers[4].TryGetProperty(key, out _), key);
            Assert.InRange(root.GetProperty("boundary_layer").GetInt32(), 0, 4);
            Assert.True(root.GetProperty("final_entropy").GetDouble() > 0);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void GenerateResponsesPerTokenAndLayerSubset()
    {
        var dir = Directory.CreateTempSubdirectory("bupo-analyze-cli-").FullName;
        try
        {
            var json = Path.Combine(dir, "r.json");
            var (code, _, err) = Run("--model", Model, "--prompt", "Once upon a time", "--generate", "5", "--positions", "response", "--seed", "3",
                "--layers", "1,3-4", "--per-token", "--json", json, "--threads", "1", "--kv-type", "f32");
            Assert.True(code == 0, err);
            using var doc = JsonDocument.Parse(File.ReadAllText(json));
            var root = doc.RootElement;
            Assert.Equal("response", root.GetProperty("positions").GetString());
            Assert.Equal([1, 3, 4], root.GetProperty("layers").EnumerateArray().Select(l => l.GetProperty("index").GetInt32()));
            var total = root.GetProperty("token_ids")[0].GetArrayLength();
            var prompt = root.GetProperty("prompt_lengths")[0].GetInt32();
            Assert.InRange(total - prompt, 1, 5);
            Assert.Equal(total - prompt, root.GetProperty("position_count").GetInt64());
            var perToken = root.GetProperty("per_token")[0];
            Assert.Equal(total - prompt, perToken.GetArrayLength());
            Assert.Equal(3, perToken[0].GetArrayLength());
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void PromptsFileAndJsonlField()
    {
        var dir = Directory.CreateTempSubdirectory("bupo-analyze-cli-").FullName;
        try
        {
            var txt = Path.Combine(dir, "p.txt");
            File.WriteAllLines(txt, ["Once upon a time", "", "Tom had a ball"]);
            var (code, output, err) = Run("--model", Model, "--prompts", txt, "--threads", "1");
            Assert.True(code == 0, err);
            Assert.Contains("2 sequence(s)", output);
            var jsonl = Path.Combine(dir, "p.jsonl");
            File.WriteAllLines(jsonl, ["{\"text\": \"Once upon a time\"}", "{\"text\": \"Tom had a ball\"}", "{\"text\": \"The sun\"}"]);
            (code, output, err) = Run("--model", Model, "--prompts", jsonl, "--field", "text", "--limit", "2", "--threads", "1");
            Assert.True(code == 0, err);
            Assert.Contains("2 sequence(s)", output);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void BadInputsAreOneLineErrors()
    {
        var dir = Directory.CreateTempSubdirectory("bupo-analyze-cli-").FullName;
        try
        {
            var missing = Path.Combine(dir, "nope.gguf");
            AssertOneLineError(Run("--model", missing, "--prompt", "hi"), missing, "not found");

            var notGguf = Path.Combine(dir, "text.gguf");
            File.WriteAllText(notGguf, "definitely not a model");
            AssertOneLineError(Run("--model", notGguf, "--prompt", "hi"), "not a GGUF file");

            var gpt2 = Path.Combine(dir, "gpt2.gguf");
            using (var src = GgufFile.Open(Model))
                GgufWriter.Copy(src, gpt2, w => w.SetString("general.architecture", "gpt2"));
            AssertOneLineError(Run("--model", gpt2, "--prompt", "hi"), "architecture 'gpt2' is not supported");

            var empty = Path.Combine(dir, "empty.txt");
            File.WriteAllText(empty, "\n\n");
            AssertOneLineError(Run("--model", Model, "--prompts", empty), "no prompts");
            AssertOneLineError(Run("--model", Model, "--prompts", Path.Combine(dir, "none.txt")), "not found");

            var longPrompt = string.Join(' ', Enumerable.Repeat("once upon a time", 700));
            AssertOneLineError(Run("--model", Model, "--prompt", "hi", "--prompt", longPrompt, "--threads", "1"), "prompt 1 is", "more than the context of"); // the model's training context
            AssertOneLineError(Run("--model", Model, "--prompt", "hi", "--generate", "10", "--ctx", "8"), "prompt 0 is", "10 tokens to generate", "context of 8 tokens");

            AssertOneLineError(Run("--model", Model, "--prompt", "hi", "--layers", "0,5"), "--layers", "out of range", "0..4");
            AssertOneLineError(Run("--model", Model, "--prompt", "hi", "--layers", "-1"), "--layers");
            AssertOneLineError(Run("--model", Model, "--prompt", " "), "empty");
            AssertOneLineError(Run("--model", Model), "exactly one of --prompt");
            AssertOneLineError(Run("--model", Model, "--prompt", "hi", "--positions", "response"), "--generate");
            AssertOneLineError(Run("--model", Model, "--prompt", "hi", "--protocol", "paper"), "--dataset");
            AssertOneLineError(Run("--model", Model, "--prompt", "hi", "--chat"), "chat template");
            AssertOneLineError(Run("--model", Model, "--prompt", "hi", "--device", "tpu"), "--device tpu");

            var usage = Run("--model", Model, "--prompt", "hi", "--engine", "onnx");
            Assert.Equal(CliHost.UsageError, usage.Code);
            Assert.Contains("onnx", OneLine(usage.Err));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void NonFiniteWeightsAreAnErrorNamingTheTensor()
    {
        // As found: a model whose tensors are NaN printed "-" everywhere and "boundary layer 0 (fallback)", exit 0.
        var dir = Directory.CreateTempSubdirectory("bupo-analyze-nan-").FullName;
        try
        {
            var nan = Path.Combine(dir, "nan.gguf");
            using (var src = GgufFile.Open(Model))
            {
                var t = src.GetTensor("blk.2.ffn_up.weight");
                var values = src.ReadTensorFloat(t);
                values[values.Length / 2] = float.NaN;
                GgufWriter.Copy(src, nan, w => w.ReplaceTensor(t.Name, GgmlType.F32, GgufTensorData.FromFloats(values)));
            }
            foreach (var engine in new[] { "llama", "torch" })
                AssertOneLineError(Run("--model", nan, "--prompt", "Once upon a time", "--threads", "1", "--engine", engine), nan, "tensor 'blk.2.ffn_up.weight' holds non-finite values");
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void PaperProtocolOnARandomQwenModel()
    {
        var vocab = SharedAssets.RequireFile(SharedAssets.Qwen2Vocab);
        SharedAssets.RequireFile(SharedAssets.DataFile("math500", "test"));
        var dir = Directory.CreateTempSubdirectory("bupo-analyze-cli-").FullName;
        try
        {
            var model = Path.Combine(dir, "qwen3.gguf");
            RandomGgufModel.Write(model, RandomModelSpec.Named("qwen3-tiny"), vocab);
            var json = Path.Combine(dir, "paper.json");
            var (code, output, err) = Run("--model", model, "--protocol", "paper", "--dataset", "math500", "--limit", "2", "--generate", "4",
                "--json", json, "--threads", "1", "--engine", "torch");
            Assert.True(code == 0, err);
            using var doc = JsonDocument.Parse(File.ReadAllText(json));
            var root = doc.RootElement;
            Assert.Equal("response", root.GetProperty("positions").GetString());
            Assert.Equal("none", root.GetProperty("norm").GetString());
            Assert.Equal(2, root.GetProperty("token_ids").GetArrayLength());
            Assert.InRange(root.GetProperty("position_count").GetInt64(), 2, 8);
            Assert.Contains("generate", output);
            // The chat template wrapped the problem: the prompt holds <|im_start|> (151644 in the Qwen2 vocabulary).
            Assert.Contains(151644, root.GetProperty("token_ids")[0].EnumerateArray().Select(e => e.GetInt32()));
            // Conflicting settings are refused.
            AssertOneLineError(Run("--model", model, "--protocol", "paper", "--dataset", "math500", "--norm", "final"), "--norm none");
        }
        finally { Directory.Delete(dir, true); }
    }
}
