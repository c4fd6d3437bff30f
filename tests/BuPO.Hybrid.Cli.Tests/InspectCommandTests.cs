using System.CommandLine;
using System.Text.Json;
using BuPO.Hybrid.Cli.Commands;
using BuPO.Hybrid.Gguf;
using BuPO.Hybrid.Tests.Support;

namespace BuPO.Hybrid.Cli.Tests;

public class InspectCommandTests
{
    private static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    private static string TempDir() => Directory.CreateTempSubdirectory("bupo-cli-test-").FullName;

    [Fact]
    public void JsonListsEveryTensorWithShapeTypeAndBytes()
    {
        var path = TinyTrainingModels.StoriesShaped;
        var (code, stdout, stderr) = Run("inspect", path, "--json");
        Assert.True(code == 0, stderr);
        Assert.Equal("", stderr);
        using var doc = JsonDocument.Parse(stdout);
        var root = doc.RootElement;
        using var f = GgufFile.Open(path);
        Assert.Equal("llama", root.GetProperty("architecture").GetString());
        Assert.Equal(f.FileLength, root.GetProperty("file_size").GetInt64());
        var tensors = root.GetProperty("tensors").EnumerateArray().ToList();
        Assert.Equal(f.Tensors.Count, tensors.Count);
        for (var i = 0; i < tensors.Count; i++)
        {
            Assert.Equal(f.Tensors[i].Name, tensors[i].GetProperty("name").GetString());
            Assert.Equal(f.Tensors[i].Type.ToString(), tensors[i].GetProperty("type").GetString());
            Assert.Equal(f.Tensors[i].Shape, tensors[i].GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()));
            Assert.Equal(f.Tensors[i].ByteSize, tensors[i].GetProperty("bytes").GetInt64());
            Assert.Equal(f.Tensors[i].ElementCount, tensors[i].GetProperty("elements").GetInt64());
        }
        var totals = root.GetProperty("totals");
        Assert.Equal(48, totals.GetProperty("tensor_count").GetInt32());
        Assert.Equal(f.Tensors.Sum(t => t.ByteSize), totals.GetProperty("bytes").GetInt64());
        Assert.Equal(5, root.GetProperty("hyperparameters").GetProperty("llama.block_count").GetInt32());
        Assert.Equal(64, root.GetProperty("hyperparameters").GetProperty("llama.embedding_length").GetInt32());
        var tok = root.GetProperty("tokenizer");
        Assert.Equal("llama", tok.GetProperty("model").GetString());
        Assert.Equal(512, tok.GetProperty("token_count").GetInt32());
        Assert.Equal(1, tok.GetProperty("bos_token_id").GetInt32());
        Assert.Equal("<s>", tok.GetProperty("bos_token").GetString());
        Assert.False(tok.GetProperty("has_chat_template").GetBoolean());
        Assert.Equal(f.Metadata.Count, root.GetProperty("metadata").GetArrayLength());
    }

    [Fact]
    public void JsonOfAGeneratedVocabFileHasItsTokenCountAndNoTensors()
    {
        int tokens;
        string model;
        using (var vocab = GgufFile.Open(TinyTrainingModels.Vocab))
        {
            Assert.Empty(vocab.Tensors); // a vocabulary-only file
            tokens = vocab.GetArray("tokenizer.ggml.tokens")!.Count;
            model = vocab.Get("tokenizer.ggml.model")!.AsString();
        }
        var (code, stdout, stderr) = Run("inspect", "--json", TinyTrainingModels.Vocab);
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        var tok = doc.RootElement.GetProperty("tokenizer");
        Assert.Equal(model, tok.GetProperty("model").GetString());
        Assert.Equal(tokens, tok.GetProperty("token_count").GetInt32());
        Assert.Equal(0, doc.RootElement.GetProperty("tensors").GetArrayLength());
    }

    [Fact]
    public void JsonOfAVocabFileHasTheTokenizerAndNoTensors()
    {
        var path = SharedAssets.RequireFile(SharedAssets.Qwen2Vocab);
        var (code, stdout, stderr) = Run("inspect", "--json", path);
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        var tok = doc.RootElement.GetProperty("tokenizer");
        Assert.Equal("gpt2", tok.GetProperty("model").GetString());
        Assert.Equal("qwen2", tok.GetProperty("pre").GetString());
        Assert.Equal(151936, tok.GetProperty("token_count").GetInt32());
        Assert.True(tok.GetProperty("has_chat_template").GetBoolean());
        Assert.Equal(0, doc.RootElement.GetProperty("tensors").GetArrayLength());
    }

    [Fact]
    public void OddValuesAndQuantizedTensorsAreShown()
    {
        var dir = TempDir();
        try
        {
            var path = Path.Combine(dir, "odd.gguf");
            new GgufWriter()
                .SetString("general.architecture", "qwen3")
                .SetFloat32("qwen3.nan", float.NaN)
                .SetString("qwen3.multi\nline", "a\tb\u0001")
                .Set("qwen3.nested", GgufValue.OfArray(new[] { GgufArray.From(new[] { 1, 2 }) }))
                .Set("qwen3.per_layer", GgufValue.OfArray(new uint[] { 8, 8, 4 }))
                .AddTensor("w", [64, 2], GgmlType.Q8_0, GgufTensorData.FromFloats(new float[128]))
                .WriteTo(path);
            var (code, stdout, stderr) = Run("inspect", path, "--json");
            Assert.True(code == 0, stderr);
            using var doc = JsonDocument.Parse(stdout);
            var hp = doc.RootElement.GetProperty("hyperparameters");
            Assert.Equal("NaN", hp.GetProperty("qwen3.nan").GetString());
            Assert.Equal([8, 8, 4], hp.GetProperty("qwen3.per_layer").EnumerateArray().Select(e => e.GetInt32()));
            Assert.Equal(2, hp.GetProperty("qwen3.nested")[0][1].GetInt32());
            Assert.Equal("Q8_0", doc.RootElement.GetProperty("tensors")[0].GetProperty("type").GetString());
            Assert.Equal(4 * 34, doc.RootElement.GetProperty("tensors")[0].GetProperty("bytes").GetInt32());

            (code, stdout, stderr) = Run("inspect", path);
            Assert.True(code == 0, stderr);
            Assert.Contains("Q8_0", stdout);
            Assert.Contains("multi\\nline", stdout);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void TablesShowHyperparametersTokenizerAndTensors()
    {
        var path = TinyTrainingModels.StoriesShaped;
        var (code, stdout, stderr) = Run("inspect", path);
        Assert.True(code == 0, stderr);
        foreach (var s in new[] { "llama.block_count", "llama.rope.dimension_count", "blk.4.ffn_down.weight", "172 x 64", "total (48)", "Tokenizer", "</s>" })
            Assert.Contains(s, stdout);
        Assert.DoesNotContain("\u001b[", stdout); // no ANSI codes when not writing to the console
    }

    public static TheoryData<string> BadFiles => new() { "missing", "text", "truncated", "directory", "empty" };

    [Theory]
    [MemberData(nameof(BadFiles))]
    public void BadFilesAreOneLineErrors(string kind)
    {
        var dir = TempDir();
        try
        {
            var path = Path.Combine(dir, "model.gguf");
            switch (kind)
            {
                case "text": File.WriteAllText(path, "This is not a GGUF file, it is a long enough piece of text."); break;
                case "truncated":
                    var src = File.ReadAllBytes(TinyTrainingModels.StoriesShaped);
                    File.WriteAllBytes(path, src[..(src.Length / 2)]);
                    break;
                case "directory": Directory.CreateDirectory(path); break;
                case "empty": File.WriteAllBytes(path, []); break;
            }
            foreach (var json in new[] { false, true })
            {
                var (code, stdout, stderr) = json ? Run("inspect", path, "--json") : Run("inspect", path);
                Assert.Equal(CliHost.Failure, code);
                Assert.Equal("", stdout);
                var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
                Assert.Single(lines);
                Assert.StartsWith("error: ", lines[0]);
                Assert.Contains(path, lines[0]);
                Assert.DoesNotContain("unexpected", lines[0]);
            }
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void TruncatedFileNamesTheFieldOrTheData()
    {
        var src = File.ReadAllBytes(TinyTrainingModels.StoriesShaped);
        var dir = TempDir();
        try
        {
            var path = Path.Combine(dir, "t.gguf");
            File.WriteAllBytes(path, src[..5000]);
            var (_, _, header) = Run("inspect", path);
            Assert.Contains("tokenizer.ggml.tokens", header);
            Assert.Contains("truncated", header);
            File.WriteAllBytes(path, src[..(src.Length - 1)]);
            var (code, _, data) = Run("inspect", path);
            Assert.Equal(CliHost.Failure, code);
            Assert.Contains("tensor data", data);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Theory]
    [InlineData("inspect", "--bogus")]
    [InlineData("inspect", "model.gguf", "--bogus")]
    [InlineData("inspect", "--jsn", "model.gguf")]
    [InlineData("inspect", "-x")]
    [InlineData("inspect")]
    public void UnknownOptionsAndMissingArgumentsAreUsageErrors(params string[] args)
    {
        var (code, stdout, stderr) = Run(args);
        Assert.Equal(CliHost.UsageError, code);
        Assert.Equal("", stdout);
        Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("error: ", stderr);
    }

    [Fact]
    public void DoubleDashAllowsAPathStartingWithADash()
    {
        var (code, _, stderr) = Run("inspect", "--", "-no-such-file.gguf");
        Assert.Equal(CliHost.Failure, code); // reached the file system, not a usage error
        Assert.Contains("-no-such-file.gguf: file not found", stderr);
    }
}
