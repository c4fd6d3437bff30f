using BuPO.Hybrid.Data;
using BuPO.Hybrid.Tests.Support;

namespace BuPO.Hybrid.Core.Tests;

public sealed class PromptDatasetTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("bupo-data-");

    public void Dispose() => _dir.Delete(true);

    private string Write(string name, string content)
    {
        var path = Path.Combine(_dir.FullName, name);
        File.WriteAllText(path, content);
        return path;
    }

    private static string DataDir => Path.GetDirectoryName(Path.GetDirectoryName(SharedAssets.RequireFile(SharedAssets.DataFile("gsm8k", "test"))))!;

    private static IReadOnlyList<PromptItem> LoadKnown(string name, string? split = null, int? limit = null) =>
        PromptDataset.Load(name, split, limit, new PromptDatasetOptions { DataDir = DataDir });

    [Fact]
    public void Gsm8k_AnswerIsTheTextAfterTheMarker()
    {
        var items = LoadKnown("gsm8k");
        Assert.Equal(1319, items.Count);
        Assert.StartsWith("Janet", items[0].Problem);
        Assert.Equal("18", items[0].Answer);
        Assert.StartsWith("Janet sells 16 - 3 - 4", items[0].Solution);
        Assert.DoesNotContain("####", items[0].Solution);
        Assert.Equal("gsm8k-0", items[0].Id);
        Assert.Equal(2, items[1].Line);
        Assert.All(items, i => Assert.False(string.IsNullOrWhiteSpace(i.Answer)));
        Assert.Equal(7473, LoadKnown("gsm8k", "train").Count);
    }

    [Fact]
    public void Math500_Aime_Amc_DeepMath()
    {
        var math = LoadKnown("math500");
        Assert.Equal(500, math.Count);
        Assert.Equal("\\left( 3, \\frac{\\pi}{2} \\right)", math[0].Answer);
        Assert.NotNull(math[0].Solution);

        var aime24 = LoadKnown("aime24");
        Assert.Equal(30, aime24.Count);
        Assert.Equal("60", aime24[0].Id);
        Assert.Contains(aime24, i => i.Answer == "025"); // leading zeros kept

        var aime25 = LoadKnown("AIME25");
        Assert.Equal(30, aime25.Count);
        Assert.Equal("70", aime25[0].Answer);

        var amc = LoadKnown("amc23");
        Assert.Equal(40, amc.Count);
        Assert.Equal("27", amc[0].Answer);
        Assert.Contains(amc, i => i.Answer == "-1");
        Assert.All(amc, i => Assert.DoesNotContain(".0", i.Answer));

        var deep = LoadKnown("deepmath5k", limit: 10);
        Assert.Equal(10, deep.Count);
        Assert.Equal("\\infty", deep[0].Answer);
        Assert.StartsWith("Determine the order", deep[0].Problem);
        Assert.Equal("Please reason step by step, and put your final answer within \\boxed{}.", deep[0].SystemPrompt);
        Assert.Equal("user", deep[0].Messages![1].Role);
    }

    [Fact]
    public void KnownNames_ResolveUnderTheSharedDataFolderByDefault()
    {
        SharedAssets.RequireFile(SharedAssets.DataFile("aime25", "test"));
        Assert.Equal(30, PromptDataset.Load("aime25").Count);
    }

    [Fact]
    public void UnknownSplitAndNameAreClearErrors()
    {
        // A data folder of our own with gsm8k's two splits: the errors need no real data.
        var dataDir = Path.Combine(_dir.FullName, "data");
        Directory.CreateDirectory(Path.Combine(dataDir, "gsm8k"));
        foreach (var split in new[] { "test", "train" })
            File.WriteAllText(Path.Combine(dataDir, "gsm8k", split + ".jsonl"), "{\"question\": \"1+1?\", \"answer\": \"#### 2\"}\n");
        var e = Assert.Throws<BupoException>(() => PromptDataset.Load("gsm8k", "dev", options: new PromptDatasetOptions { DataDir = dataDir }));
        Assert.Contains("no split 'dev'", e.Message);
        Assert.Contains("available: test, train", e.Message);
        Assert.Contains("unknown dataset 'gsm9k'", Assert.Throws<BupoException>(() => PromptDataset.Load("gsm9k")).Message);
        Assert.Contains("dataset file not found: nope/x.jsonl", Assert.Throws<BupoException>(() => PromptDataset.Load("nope/x.jsonl")).Message);
        Assert.Contains("--data-dir: folder not found", Assert.Throws<BupoException>(() =>
            PromptDataset.Load("gsm8k", options: new PromptDatasetOptions { DataDir = "/no/such/dir" })).Message);
    }

    [Fact]
    public void CustomJsonl_DetectsFieldsAndRendersNumbers()
    {
        var path = Write("custom.jsonl",
            "{\"question\": \"q1\", \"answer\": 27.0}\n" +
            "\n" +
            "{\"problem\": \"q2\", \"final_answer\": \"\\\\frac{1}{2}\", \"id\": 9}\n" +
            "{\"prompt\": \"q3\", \"answer\": 0.25}\n" +
            "{\"input\": \"q4\"}\n");
        var items = PromptDataset.Load(path);
        Assert.Equal(["custom-0", "9", "custom-2", "custom-3"], items.Select(i => i.Id));
        Assert.Equal(["q1", "q2", "q3", "q4"], items.Select(i => i.Problem));
        Assert.Equal(["27", "\\frac{1}{2}", "0.25", null], items.Select(i => i.Answer));
        Assert.Equal([1, 3, 4, 5], items.Select(i => i.Line));
        Assert.Equal(path, items[0].Source);
        Assert.Equal(2, PromptDataset.Load(path, limit: 2).Count);
    }

    [Fact]
    public void FieldOverrides()
    {
        var path = Write("c.jsonl", "{\"text\": \"t1\", \"gold\": \"5\", \"question\": \"ignored\"}\n{\"text\": \"t2\", \"gold\": 6}\n");
        var items = PromptDataset.Load(path, options: new PromptDatasetOptions { ProblemField = "text", AnswerField = "gold" });
        Assert.Equal(["t1", "t2"], items.Select(i => i.Problem));
        Assert.Equal(["5", "6"], items.Select(i => i.Answer));

        var e = Assert.Throws<BupoException>(() => PromptDataset.Load(Write("d.jsonl", "{\"text\": \"t1\", \"gold\": 1}\n{\"text\": \"t2\"}\n"),
            options: new PromptDatasetOptions { ProblemField = "text", AnswerField = "gold" }));
        Assert.EndsWith("d.jsonl:2: no field 'gold'", e.Message);
        var e2 = Assert.Throws<BupoException>(() => PromptDataset.Load(path, options: new PromptDatasetOptions { ProblemField = "body" }));
        Assert.EndsWith("c.jsonl:1: no field 'body'", e2.Message);
    }

    [Fact]
    public void Gsm8kFormat_InACustomFile()
    {
        var items = PromptDataset.Load(Write("g.jsonl", "{\"question\": \"q\", \"answer\": \"2+2=4\\n#### 1,000\"}\n"));
        Assert.Equal("1,000", items[0].Answer);
        Assert.Equal("2+2=4", items[0].Solution);
    }

    [Fact]
    public void PlainText_OnePromptPerLine()
    {
        var path = Write("prompts.txt", "Once upon a time\n\n  Lily went to the park  \n");
        var items = PromptDataset.Load(path);
        Assert.Equal(["Once upon a time", "Lily went to the park"], items.Select(i => i.Problem));
        Assert.Equal(["prompts-0", "prompts-1"], items.Select(i => i.Id));
        Assert.All(items, i => Assert.Null(i.Answer));
        Assert.Equal(3, items[1].Line);
        Assert.Single(PromptDataset.Load(Write("noext", "just one prompt\n")));
        Assert.Contains("JSONL files", Assert.Throws<BupoException>(() => PromptDataset.Load(path, options: new PromptDatasetOptions { ProblemField = "x" })).Message);
    }

    [Theory]
    [InlineData("e.jsonl", "", "e.jsonl: no prompts (the file is empty)")]
    [InlineData("e2.jsonl", "\n  \n", "e2.jsonl: no prompts (the file is empty)")]
    [InlineData("e3.txt", "", "e3.txt: no prompts (the file is empty)")]
    [InlineData("bad.jsonl", "{\"problem\": \"a\"}\n{\"problem\": \"b\",}\n", "bad.jsonl:2: invalid JSON")]
    [InlineData("arr.jsonl", "[1, 2]\n", "arr.jsonl:1: expected a JSON object, got an array")]
    [InlineData("nofield.jsonl", "{\"problem\": \"a\"}\n{\"body\": \"b\"}\n", "nofield.jsonl:2: no problem field")]
    [InlineData("num.jsonl", "{\"problem\": 5}\n", "num.jsonl:1: no problem field")]
    [InlineData("empty.jsonl", "{\"problem\": \"  \"}\n", "empty.jsonl:1: field 'problem' is empty")]
    [InlineData("obj.jsonl", "{\"problem\": \"a\", \"answer\": {\"x\": 1}}\n", "obj.jsonl:1: field 'answer' is an object, expected a string or a number")]
    public void BadFiles_AreOneLineErrorsNamingFileAndLine(string name, string content, string expected)
    {
        var path = Write(name, content);
        var e = Assert.Throws<BupoException>(() => PromptDataset.Load(path));
        Assert.Contains(expected, e.Message);
        Assert.StartsWith(path, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void NonPositiveLimitIsRejected() =>
        Assert.Contains("--limit", Assert.Throws<BupoException>(() => PromptDataset.Load(Write("x.txt", "a\n"), limit: 0)).Message);

    [Fact]
    public void KnownDatasetLinesWithoutAnAnswerAreErrors()
    {
        var root = _dir.CreateSubdirectory("data");
        Directory.CreateDirectory(Path.Combine(root.FullName, "gsm8k"));
        File.WriteAllText(Path.Combine(root.FullName, "gsm8k", "test.jsonl"), "{\"question\": \"q\", \"answer\": \"#### 3\"}\n{\"question\": \"q2\"}\n");
        var e = Assert.Throws<BupoException>(() => PromptDataset.Load("gsm8k", options: new PromptDatasetOptions { DataDir = root.FullName }));
        Assert.Contains("test.jsonl:2: no answer field", e.Message);
    }
    [Fact]
    public void NonUtf8BytesAreAnErrorNamingTheLine()
    {
        // As found: Latin-1 text was read with replacement characters, silently.
        var path = Path.Combine(_dir.FullName, "latin1.jsonl");
        File.WriteAllBytes(path, [.. "{\"problem\": \"ok\", \"answer\": \"1\"}\n{\"problem\": \"caf"u8, 0xE9, .. "\", \"answer\": \"2\"}\n"u8]);
        var e = Assert.Throws<BupoException>(() => PromptDataset.Load(path));
        Assert.Contains("latin1.jsonl:2: not valid UTF-8", e.Message);
        // A BOM and CRLF line ends are fine.
        var bom = Path.Combine(_dir.FullName, "bom.jsonl");
        File.WriteAllBytes(bom, [0xEF, 0xBB, 0xBF, .. "{\"problem\": \"caf\u00e9\", \"answer\": \"1\"}\r\n{\"problem\": \"b\", \"answer\": \"2\"}"u8]);
        var items = PromptDataset.Load(bom);
        Assert.Equal(["café", "b"], items.Select(x => x.Problem));
        Assert.Equal([1, 2], items.Select(x => x.Line));
    }

    [Fact]
    public void AHugeLineIsRejectedWithoutReadingItWhole()
    {
        // As found: a 50 MB prompt line cost 2.3 GB of memory before it was rejected.
        var path = Path.Combine(_dir.FullName, "huge.txt");
        using (var w = new StreamWriter(path))
        {
            w.WriteLine("a short prompt");
            var chunk = new string('x', 1 << 20);
            for (var i = 0; i < 12 * (PromptDataset.MaxLineBytes >> 20); i++) w.Write(chunk); // 12x the cap, 48 MB
            w.WriteLine();
        }
        var before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<BupoException>(() => PromptDataset.Load(path));
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Contains("huge.txt:2: the line is longer than", e.Message);
        // Reading stops at the cap: what it cost is a few times the cap (the line buffer's growth), far less than the line.
        Assert.True(allocated < 6L * PromptDataset.MaxLineBytes, $"allocated {allocated} bytes for a {12 * PromptDataset.MaxLineBytes}-byte line");
    }
}
