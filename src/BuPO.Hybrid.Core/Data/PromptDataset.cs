using System.Text;
using System.Globalization;
using System.Text.Json;

namespace BuPO.Hybrid.Data;

/// <summary>Options of <see cref="PromptDataset.Load"/>.</summary>
public sealed record PromptDatasetOptions
{
    /// <summary>The folder holding <c>&lt;name&gt;/&lt;split&gt;.jsonl</c> for the known datasets (the CLI's --data-dir).
    /// When null: BUPO_DATA_DIR, else <c>../shared/data</c> beside the repository or the current folder.</summary>
    public string? DataDir { get; init; }

    /// <summary>The JSONL field holding the problem (the CLI's --field). When null it is detected:
    /// the first of <see cref="PromptDataset.ProblemFields"/> a line has.</summary>
    public string? ProblemField { get; init; }

    /// <summary>The JSONL field holding the reference answer (the CLI's --answer-field). When null it is detected:
    /// the first of <see cref="PromptDataset.AnswerFields"/> a line has.</summary>
    public string? AnswerField { get; init; }
}

/// <summary>
/// Loads prompt datasets: a known name (<see cref="KnownNames"/>, resolved under the data folder as
/// <c>&lt;name&gt;/&lt;split&gt;.jsonl</c>), a JSONL file, or a plain-text file with one prompt per line.
/// Bad input raises <see cref="BupoException"/> naming the file and the line.
/// </summary>
public static class PromptDataset
{
    /// <summary>The datasets found by name under the data folder, with the split used when none is given.</summary>
    public static IReadOnlyDictionary<string, string> KnownNames { get; } = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase)
    {
        ["gsm8k"] = "test",
        ["math500"] = "test",
        ["aime24"] = "test",
        ["aime25"] = "test",
        ["amc23"] = "test",
        ["deepmath5k"] = "train",
    };

    /// <summary>Fields tried, in order, for the problem text.</summary>
    public static IReadOnlyList<string> ProblemFields { get; } = ["problem", "question", "prompt", "input", "instruction"];

    /// <summary>Fields tried, in order, for the reference answer.</summary>
    public static IReadOnlyList<string> AnswerFields { get; } = ["answer", "final_answer", "ground_truth", "target"];

    /// <summary>
    /// Loads <paramref name="nameOrPath"/>: an existing file, else a known dataset name.
    /// </summary>
    /// <param name="nameOrPath">A known dataset name, or a .jsonl (or plain-text) file.</param>
    /// <param name="split">For known names: the split file (null: the dataset's usual one, "test", or "train" for deepmath5k).
    /// Ignored for paths.</param>
    /// <param name="limit">Keep only the first <paramref name="limit"/> prompts (must be positive).</param>
    /// <param name="options">Data folder and field overrides.</param>
    public static IReadOnlyList<PromptItem> Load(string nameOrPath, string? split = null, int? limit = null, PromptDatasetOptions? options = null)
    {
        options ??= new PromptDatasetOptions();
        if (limit is <= 0) throw new BupoException($"--limit must be a positive number of prompts, got {limit}");
        var (path, known) = Resolve(nameOrPath, split, options.DataDir);
        // Items without an id are named <dataset>-<index>: the known name, else the file's name.
        var name = known ? nameOrPath.ToLowerInvariant() : Path.GetFileNameWithoutExtension(path);
        return IsJsonl(path)
            ? ReadJsonl(path, name, limit, options, requireAnswer: known || options.AnswerField != null)
            : ReadText(path, name, limit, options);
    }

    /// <summary>
    /// The file <paramref name="nameOrPath"/> stands for, and whether it was a known dataset name.
    /// </summary>
    public static (string Path, bool KnownName) Resolve(string nameOrPath, string? split = null, string? dataDir = null)
    {
        if (string.IsNullOrWhiteSpace(nameOrPath)) throw new BupoException("no dataset given: name one of " + string.Join(", ", KnownNames.Keys) + " or a .jsonl/.txt file");
        if (File.Exists(nameOrPath)) return (nameOrPath, false);
        if (!KnownNames.TryGetValue(nameOrPath, out var defaultSplit))
        {
            if (Directory.Exists(nameOrPath)) throw new BupoException($"dataset {nameOrPath}: is a folder; give a .jsonl or .txt file");
            var looksLikePath = nameOrPath.IndexOfAny(['/', '\\']) >= 0 || Path.HasExtension(nameOrPath);
            throw new BupoException(looksLikePath
                ? $"dataset file not found: {nameOrPath}"
                : $"unknown dataset '{nameOrPath}': not a file and not one of {string.Join(", ", KnownNames.Keys)}");
        }
        var root = FindDataRoot(dataDir)
            ?? throw new BupoException($"dataset '{nameOrPath}': data folder not found (give --data-dir, set BUPO_DATA_DIR, or put shared/data beside the repository)");
        var name = nameOrPath.ToLowerInvariant();
        var file = Path.Combine(root, name, (split ?? defaultSplit) + ".jsonl");
        if (File.Exists(file)) return (file, true);
        var dir = Path.Combine(root, name);
        var available = Directory.Exists(dir)
            ? string.Join(", ", Directory.GetFiles(dir, "*.jsonl").Select(Path.GetFileNameWithoutExtension).Order())
            : "";
        throw new BupoException(available.Length > 0
            ? $"dataset '{name}' has no split '{split ?? defaultSplit}': {file} not found (available: {available})"
            : $"dataset '{name}': {file} not found");
    }

    /// <summary>
    /// The data folder: <paramref name="dataDir"/> when given, else BUPO_DATA_DIR, else the first
    /// <c>../shared/data</c> found beside the repository (searched up from the current folder and the
    /// application folder) or beside the current folder; null when none exists.
    /// </summary>
    public static string? FindDataRoot(string? dataDir = null)
    {
        if (!string.IsNullOrEmpty(dataDir))
            return Directory.Exists(dataDir) ? dataDir : throw new BupoException($"--data-dir: folder not found: {dataDir}");
        var env = Environment.GetEnvironmentVariable("BUPO_DATA_DIR");
        if (!string.IsNullOrEmpty(env))
            return Directory.Exists(env) ? env : throw new BupoException($"BUPO_DATA_DIR: folder not found: {env}");
        if (SharedFolder.Find() is { } shared && Directory.Exists(Path.Combine(shared, "data"))) return Path.Combine(shared, "data");
        var beside = Path.GetFullPath(Path.Combine(Directory.GetCurrentDirectory(), "..", "shared", "data"));
        return Directory.Exists(beside) ? beside : null;
    }

    private static bool IsJsonl(string path)
    {
        var ext = Path.GetExtension(path).ToLowerInvariant();
        if (ext is ".jsonl" or ".json" or ".ndjson") return true;
        if (ext is ".txt") return false;
        foreach (var (_, line) in ReadLines(path))
            if (!string.IsNullOrWhiteSpace(line)) return line.TrimStart().StartsWith('{');
        return false;
    }

    private static List<PromptItem> ReadText(string path, string name, int? limit, PromptDatasetOptions options)
    {
        if (options.ProblemField != null || options.AnswerField != null)
            throw new BupoException($"{path}: --field/--answer-field apply to JSONL files, and this is a plain-text file (one prompt per line)");
        var items = new List<PromptItem>();
        foreach (var (lineNo, line) in ReadLines(path))
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            items.Add(new PromptItem($"{name}-{items.Count}", line.Trim(), null, Source: path, Line: lineNo));
            if (items.Count == limit) break;
        }
        if (items.Count == 0) throw new BupoException($"{path}: no prompts (the file is empty)");
        return items;
    }

    private static List<PromptItem> ReadJsonl(string path, string name, int? limit, PromptDatasetOptions options, bool requireAnswer)
    {
        var items = new List<PromptItem>();
        foreach (var (lineNo, line) in ReadLines(path))
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            JsonDocument doc;
            try { doc = JsonDocument.Parse(line); }
            catch (JsonException e) { throw new BupoException($"{path}:{lineNo}: invalid JSON ({OneLine(e.Message)})"); }
            using (doc)
            {
                var obj = doc.RootElement;
                if (obj.ValueKind != JsonValueKind.Object) throw new BupoException($"{path}:{lineNo}: expected a JSON object, got {Kind(obj)}");
                items.Add(ReadItem(obj, path, lineNo, $"{name}-{items.Count}", options, requireAnswer));
            }
            if (items.Count == limit) break;
        }
        if (items.Count == 0) throw new BupoException($"{path}: no prompts (the file is empty)");
        return items;
    }

    private static PromptItem ReadItem(JsonElement obj, string path, int lineNo, string defaultId, PromptDatasetOptions options, bool requireAnswer)
    {
        string where = $"{path}:{lineNo}";

        var problemField = options.ProblemField ?? ProblemFields.FirstOrDefault(f => obj.TryGetProperty(f, out var v) && v.ValueKind == JsonValueKind.String)
            ?? throw new BupoException($"{where}: no problem field (looked for {string.Join(", ", ProblemFields)}; name one with --field)");
        if (!obj.TryGetProperty(problemField, out var problemValue))
            throw new BupoException($"{where}: no field '{problemField}'");
        if (problemValue.ValueKind != JsonValueKind.String)
            throw new BupoException($"{where}: field '{problemField}' is {Kind(problemValue)}, expected a string");
        var problem = problemValue.GetString()!;
        if (string.IsNullOrWhiteSpace(problem)) throw new BupoException($"{where}: field '{problemField}' is empty");

        var answerField = options.AnswerField ?? AnswerFields.FirstOrDefault(f => obj.TryGetProperty(f, out var v) && v.ValueKind != JsonValueKind.Null);
        string? answer = null, solution = null;
        if (answerField != null)
        {
            if (!obj.TryGetProperty(answerField, out var answerValue) || answerValue.ValueKind == JsonValueKind.Null)
                throw new BupoException($"{where}: no field '{answerField}'");
            answer = answerValue.ValueKind switch
            {
                JsonValueKind.String => answerValue.GetString()!.Trim(),
                JsonValueKind.Number => RenderNumber(answerValue),
                _ => throw new BupoException($"{where}: field '{answerField}' is {Kind(answerValue)}, expected a string or a number"),
            };
            // GSM8K: the worked solution ends with "#### <answer>".
            if (Gsm8kAnswer.TryExtract(answer, out var final, out var before))
            {
                answer = final;
                solution = before.Length > 0 ? before : null;
            }
            if (answer.Length == 0) throw new BupoException($"{where}: field '{answerField}' is empty");
        }
        else if (requireAnswer)
            throw new BupoException($"{where}: no answer field (looked for {string.Join(", ", AnswerFields)}; name one with --answer-field)");

        if (solution == null && obj.TryGetProperty("solution", out var sol) && sol.ValueKind == JsonValueKind.String)
            solution = sol.GetString();

        var id = defaultId;
        if (obj.TryGetProperty("id", out var idValue))
        {
            if (idValue.ValueKind == JsonValueKind.String) id = idValue.GetString()!;
            else if (idValue.ValueKind == JsonValueKind.Number) id = idValue.GetRawText();
        }

        return new PromptItem(id, problem, answer, solution, ReadMessages(obj), path, lineNo);
    }

    /// <summary>A chat list in <c>prompt</c> or <c>messages</c> (objects with string <c>role</c> and <c>content</c>), else null.</summary>
    private static List<ChatMessage>? ReadMessages(JsonElement obj)
    {
        foreach (var field in new[] { "prompt", "messages" })
        {
            if (!obj.TryGetProperty(field, out var list) || list.ValueKind != JsonValueKind.Array) continue;
            var messages = new List<ChatMessage>();
            foreach (var m in list.EnumerateArray())
            {
                if (m.ValueKind != JsonValueKind.Object
                    || !m.TryGetProperty("role", out var role) || role.ValueKind != JsonValueKind.String
                    || !m.TryGetProperty("content", out var content) || content.ValueKind != JsonValueKind.String)
                    return null;
                messages.Add(new ChatMessage(role.GetString()!, content.GetString()!));
            }
            return messages.Count > 0 ? messages : null;
        }
        return null;
    }

    /// <summary>An integer literal as written; other numbers in their shortest form, integral ones without ".0" (AMC's 27.0 -> "27").</summary>
    private static string RenderNumber(JsonElement value)
    {
        var raw = value.GetRawText();
        if (raw.All(c => char.IsAsciiDigit(c) || c == '-')) return raw;
        var v = value.GetDouble();
        if (Math.Abs(v) < 1e15 && v == Math.Floor(v)) return ((long)v).ToString(CultureInfo.InvariantCulture);
        return v.ToString("R", CultureInfo.InvariantCulture);
    }

    private static string Kind(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        _ => "null",
    };

    private static string OneLine(string s) => s.ReplaceLineEndings(" ");

    /// <summary>The longest line read (bytes): far beyond any problem or chat, and a bound on what one line can cost in memory.</summary>
    public const int MaxLineBytes = 4 << 20;

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>
    /// The file's lines with their 1-based numbers, decoded as strict UTF-8 (a BOM is skipped, "\r\n" accepted): invalid
    /// bytes and lines over <see cref="MaxLineBytes"/> are errors naming the line, not replacement characters or gigabytes.
    /// </summary>
    private static IEnumerable<(int Line, string Text)> ReadLines(string path)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        var buf = new byte[1 << 16];
        var line = new MemoryStream();
        var lineNo = 1;
        var first = true;
        int n;
        while ((n = fs.Read(buf, 0, buf.Length)) > 0)
        {
            var start = 0;
            if (first)
            {
                first = false;
                if (n >= 3 && buf[0] == 0xEF && buf[1] == 0xBB && buf[2] == 0xBF) start = 3;
            }
            while (start < n)
            {
                var nl = Array.IndexOf(buf, (byte)'\n', start, n - start);
                var end = nl < 0 ? n : nl;
                if (line.Length + (end - start) > MaxLineBytes)
                    throw new BupoException($"{path}:{lineNo}: the line is longer than {MaxLineBytes >> 20} MiB: not a prompt");
                line.Write(buf, start, end - start);
                if (nl < 0) break;
                yield return (lineNo, Decode(path, lineNo, line));
                line.SetLength(0);
                lineNo++;
                start = nl + 1;
            }
        }
        if (line.Length > 0) yield return (lineNo, Decode(path, lineNo, line));
    }

    private static string Decode(string path, int lineNo, MemoryStream line)
    {
        var bytes = line.GetBuffer().AsSpan(0, (int)line.Length);
        if (bytes.Length > 0 && bytes[^1] == (byte)'\r') bytes = bytes[..^1];
        try { return StrictUtf8.GetString(bytes); }
        catch (DecoderFallbackException) { throw new BupoException($"{path}:{lineNo}: not valid UTF-8 text (save the file as UTF-8)"); }
    }
}
