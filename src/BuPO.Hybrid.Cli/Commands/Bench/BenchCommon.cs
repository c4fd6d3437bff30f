using System.CommandLine;
using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using BuPO.Hybrid.Bench;
using BuPO.Hybrid.Bench.Models;
using Spectre.Console;

namespace BuPO.Hybrid.Cli.Commands.Bench;

/// <summary>
/// What the <c>bench</c> subcommands of this folder (train, sync, analyze, tokenize; registered in
/// <see cref="Commands.BenchCommand.Subcommands"/>) share: JSON output, number formats, option checks (the console is <see cref="CliConsole.Create"/>).
/// </summary>
public static class BenchCommon
{
    /// <summary>Version of the <c>--json</c> layout of bench train, sync, analyze and tokenize (bumped on incompatible changes).</summary>
    public const int JsonSchemaVersion = 1;

    public static Option<FileInfo?> JsonOption() => new("--json") { Description = "Also write the results as JSON to this file" };

    public static Option<int> ThreadsOption(string what) =>
        new("--threads") { Description = $"CPU threads for {what} (0 = all processors; on a busy machine 1 avoids contention collapsing throughput)", DefaultValueFactory = _ => 0 };

    /// <summary>Restricts an option to fixed values with a one-line parse error.</summary>
    public static void OneOf(Option option, params string[] values)
    {
        option.Validators.Add(r =>
        {
            foreach (var token in r.Tokens)
                if (!values.Contains(token.Value, StringComparer.OrdinalIgnoreCase))
                    r.AddError($"{option.Name} {token.Value}: expected one of {string.Join(", ", values)}");
        });
        option.CompletionSources.Add(values);
    }

    /// <summary>A positive value or a one-line error naming the option.</summary>
    public static int Positive(string option, int value) =>
        value > 0 ? value : throw new BupoException($"{option} must be positive, got {value}");

    public static int NonNegative(string option, int value) =>
        value >= 0 ? value : throw new BupoException($"{option} must be >= 0, got {value}");

    /// <summary>Splits a comma list ("Q8_0,F16"), trimming and dropping empty items.</summary>
    public static string[] List(string option, string? value)
    {
        var items = (value ?? "").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        return items.Length > 0 ? items : throw new BupoException($"{option} is empty");
    }

    /// <summary>A progress line on stderr (stdout keeps the table and the notes only).</summary>
    public static void Log(TextWriter stderr, string message) => stderr.WriteLine(message);

    public static string F(double v, int decimals = 2) =>
        double.IsFinite(v) ? v.ToString("N" + decimals.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture) : "-";

    public static string Ratio(double v) => double.IsFinite(v) ? v.ToString("0.00", CultureInfo.InvariantCulture) + "x" : "-";

    /// <summary>Rounds for JSON (keeps files readable; no NaN/Infinity, which JSON lacks).</summary>
    public static JsonNode? Num(double v, int decimals = 4) => double.IsFinite(v) ? JsonValue.Create(Math.Round(v, decimals)) : null;

    /// <summary>The JSON document every subcommand writes: benchmark name, schema, machine, model, settings, results.</summary>
    internal static JsonObject Document(string benchmark, BenchModel? model, JsonObject settings, JsonArray results)
    {
        var doc = new JsonObject
        {
            ["benchmark"] = benchmark,
            ["schema_version"] = JsonSchemaVersion,
            ["created_utc"] = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture),
            ["machine"] = Machine(),
        };
        if (model != null) doc["model"] = ModelJson(model);
        doc["settings"] = settings;
        doc["results"] = results;
        return doc;
    }

    /// <summary>The "model" object of the JSON document.</summary>
    internal static JsonObject ModelJson(BenchModel model) => new()
    {
        ["path"] = model.Path,
        ["label"] = model.Label,
        ["random_shape"] = model.RandomShape,
        ["vocab"] = model.Vocab,
        ["vocab_size"] = model.VocabSize,
        ["vocab_kind"] = model.VocabKind.ToString().ToLowerInvariant(),
    };

    public static JsonObject Machine() => new()
    {
        ["os"] = System.Runtime.InteropServices.RuntimeInformation.OSDescription,
        ["processors"] = Environment.ProcessorCount,
        ["dotnet"] = Environment.Version.ToString(),
        ["load_average_1m"] = BenchMachine.LoadAverage() is { } l ? Num(l, 2) : null,
    };

    /// <summary>A note to print under each table: processors and load (measurements on a loaded machine are noisy).</summary>
    public static string MachineNote()
    {
        var load = BenchMachine.LoadAverage();
        return $"machine: {Environment.ProcessorCount} processors" + (load is { } l ? FormattableString.Invariant($", load average {l:F1}") : "") +
               (load is { } l2 && l2 > Environment.ProcessorCount ? " (busy: absolute numbers are noisy, compare the ratios measured side by side; --threads 1 avoids thread contention collapsing throughput)" : "");
    }

    public static void WriteJson(FileInfo file, JsonObject doc, IAnsiConsole console)
    {
        var text = doc.ToJsonString(JsonFormat.IndentedUnescaped);
        try { AtomicFile.WriteAllText(file.FullName, text + "\n"); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new BupoException($"{file.FullName}: cannot write: {e.Message}");
        }
        console.WriteLine($"wrote {file.FullName}");
    }
}
