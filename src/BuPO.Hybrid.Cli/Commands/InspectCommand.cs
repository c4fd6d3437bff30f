using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using BuPO.Hybrid.Gguf;
using Spectre.Console;

namespace BuPO.Hybrid.Cli.Commands;

/// <summary><c>bupo-hybrid inspect MODEL.gguf [--json]</c>: architecture, hyperparameters, tokenizer and tensors of a GGUF.</summary>
public static class InspectCommand
{
    /// <summary>Version of the <c>--json</c> document layout (bumped on incompatible changes).</summary>
    public const int JsonSchemaVersion = 1;

    /// <summary>Arrays up to this many elements are printed in full; longer ones as a type and count.</summary>
    private const int MaxArrayItemsShown = 16;

    public static Command Create()
    {
        var model = new Argument<string>("model") { Description = "GGUF file to inspect" };
        var json = new Option<bool>("--json") { Description = "Print a JSON document instead of tables" };
        var cmd = new Command("inspect", "Show a GGUF model's architecture, hyperparameters, tokenizer and tensor table") { model, json };
        cmd.SetAction(parse =>
        {
            var output = parse.InvocationConfiguration.Output;
            using var file = GgufFile.Open(parse.GetValue(model)!);
            if (parse.GetValue(json)) WriteJson(file, output);
            else WriteTables(file, output);
            return 0;
        });
        return cmd;
    }

    // ---- summary shared by both outputs ----

    private sealed record TokenizerSummary(
        string? Model, string? Pre, long? TokenCount, long? MergeCount,
        long? BosId, long? EosId, long? PadId, long? UnkId, bool? AddBos, bool? AddEos, string? ChatTemplate,
        string? BosText, string? EosText);

    private static TokenizerSummary Tokenizer(GgufFile f)
    {
        var tokens = f.GetArray("tokenizer.ggml.tokens");
        string? Text(long? id) => id is { } i && tokens?.Items is string[] s && i >= 0 && i < s.Length ? s[i] : null;
        long? Id(string key) => f.Get(key)?.AsInt64OrNull();
        bool? Flag(string key) => f.Get(key) is { Value: bool b } ? b : null;
        var bos = Id("tokenizer.ggml.bos_token_id");
        var eos = Id("tokenizer.ggml.eos_token_id");
        return new TokenizerSummary(
            f.Get("tokenizer.ggml.model")?.Value as string, f.Get("tokenizer.ggml.pre")?.Value as string,
            tokens?.Count, f.GetArray("tokenizer.ggml.merges")?.Count,
            bos, eos, Id("tokenizer.ggml.padding_token_id"), Id("tokenizer.ggml.unknown_token_id"),
            Flag("tokenizer.ggml.add_bos_token"), Flag("tokenizer.ggml.add_eos_token"),
            f.Get("tokenizer.chat_template")?.Value as string, Text(bos), Text(eos));
    }

    private static string HyperPrefix(GgufFile f) => (f.Get("general.architecture")?.Value as string ?? "") + ".";

    private static bool IsHyperparameter(GgufFile f, string key) => HyperPrefix(f) is var p && p.Length > 1 && key.StartsWith(p, StringComparison.Ordinal);

    private static string TypeName(GgufValueType t) => t switch
    {
        GgufValueType.UInt8 => "uint8",
        GgufValueType.Int8 => "int8",
        GgufValueType.UInt16 => "uint16",
        GgufValueType.Int16 => "int16",
        GgufValueType.UInt32 => "uint32",
        GgufValueType.Int32 => "int32",
        GgufValueType.Float32 => "float32",
        GgufValueType.Bool => "bool",
        GgufValueType.String => "string",
        GgufValueType.Array => "array",
        GgufValueType.UInt64 => "uint64",
        GgufValueType.Int64 => "int64",
        GgufValueType.Float64 => "float64",
        _ => ((uint)t).ToString(CultureInfo.InvariantCulture),
    };

    private static string Shape(long[] shape) => string.Join(" x ", shape.Select(d => d.ToString(CultureInfo.InvariantCulture)));

    private static string Escape(string s, int max = 60)
    {
        var sb = new StringBuilder();
        foreach (var c in s)
        {
            if (sb.Length >= max) { sb.Append('…'); break; }
            sb.Append(c switch { '\n' => "\\n", '\r' => "\\r", '\t' => "\\t", _ when char.IsControl(c) => $"\\x{(int)c:X2}", _ => c.ToString() });
        }
        return sb.ToString();
    }

    private static string Scalar(object v) => v switch
    {
        string s => Escape(s),
        bool b => b ? "true" : "false",
        float x => x.ToString("R", CultureInfo.InvariantCulture),
        double x => x.ToString("R", CultureInfo.InvariantCulture),
        IFormattable x => x.ToString(null, CultureInfo.InvariantCulture),
        _ => v.ToString() ?? "",
    };

    private static string Display(GgufValue v)
    {
        if (v.Value is not GgufArray a) return Scalar(v.Value);
        if (a.Count > MaxArrayItemsShown || a.ElementType == GgufValueType.Array) return $"[{TypeName(a.ElementType)} x {a.Count}]";
        return "[" + string.Join(", ", a.Items.Cast<object>().Select(Scalar)) + "]";
    }

    private static string Bytes(long n) => n switch
    {
        >= 1L << 30 => $"{n / (double)(1L << 30):F2} GiB",
        >= 1L << 20 => $"{n / (double)(1L << 20):F2} MiB",
        >= 1L << 10 => $"{n / 1024.0:F1} KiB",
        _ => $"{n} B",
    };

    // ---- tables ----

    private static void WriteTables(GgufFile f, TextWriter output)
    {
        var console = CliConsole.Create(output, interactive: false, offTerminalWidth: 200);
        string E(string s) => Markup.Escape(s);

        var totalBytes = f.Tensors.Sum(t => t.ByteSize);
        var totalElements = f.Tensors.Sum(t => t.ElementCount);
        var summary = new Table().Title("[bold]GGUF[/]").HideHeaders().AddColumn("").AddColumn("");
        summary.AddRow("file", E(f.Path));
        summary.AddRow("size", $"{f.FileLength:N0} bytes ({Bytes(f.FileLength)})");
        summary.AddRow("version", $"GGUF v{f.Version}, alignment {f.Alignment}, data at {f.DataOffset}");
        summary.AddRow("architecture", E(f.Architecture ?? "(none)"));
        summary.AddRow("name", E(f.Get("general.name")?.Value as string ?? "(none)"));
        if (f.Get("general.file_type") is { } ft) summary.AddRow("file type", E(Display(ft)));
        summary.AddRow("tensors", $"{f.Tensors.Count:N0}, {totalElements:N0} parameters, {Bytes(totalBytes)}");
        console.Write(summary);

        var hyper = f.Metadata.Where(kv => IsHyperparameter(f, kv.Key)).ToList();
        if (hyper.Count > 0)
        {
            var t = new Table().Title("[bold]Hyperparameters[/]").AddColumn("key").AddColumn("type").AddColumn("value");
            foreach (var kv in hyper) t.AddRow(E(Escape(kv.Key, 120)), TypeName(kv.Value.Type), E(Display(kv.Value)));
            console.Write(t);
        }

        var tok = Tokenizer(f);
        if (tok.TokenCount != null || tok.Model != null)
        {
            var t = new Table().Title("[bold]Tokenizer[/]").HideHeaders().AddColumn("").AddColumn("");
            t.AddRow("model", E(tok.Model ?? "(none)"));
            t.AddRow("pre", E(tok.Pre ?? "(none)"));
            t.AddRow("tokens", tok.TokenCount?.ToString("N0", CultureInfo.InvariantCulture) ?? "(none)");
            if (tok.MergeCount != null) t.AddRow("merges", tok.MergeCount.Value.ToString("N0", CultureInfo.InvariantCulture));
            t.AddRow("bos", tok.BosId is { } b ? $"{b} {E(Escape(tok.BosText ?? ""))}" : "(none)");
            t.AddRow("eos", tok.EosId is { } e ? $"{e} {E(Escape(tok.EosText ?? ""))}" : "(none)");
            if (tok.PadId != null) t.AddRow("padding", tok.PadId.Value.ToString(CultureInfo.InvariantCulture));
            if (tok.AddBos != null) t.AddRow("add bos", tok.AddBos.Value ? "yes" : "no");
            t.AddRow("chat template", tok.ChatTemplate is { } ct ? $"yes ({ct.Length:N0} chars)" : "no");
            console.Write(t);
        }

        var other = f.Metadata.Where(kv => !IsHyperparameter(f, kv.Key) && !kv.Key.StartsWith("tokenizer.", StringComparison.Ordinal)).ToList();
        if (other.Count > 0)
        {
            var t = new Table().Title("[bold]Other metadata[/]").AddColumn("key").AddColumn("type").AddColumn("value");
            foreach (var kv in other) t.AddRow(E(Escape(kv.Key, 120)), TypeName(kv.Value.Type), E(Display(kv.Value)));
            console.Write(t);
        }

        var tensors = new Table().Title("[bold]Tensors[/]").AddColumn("name").AddColumn("type").AddColumn("shape (ggml)")
            .AddColumn(new TableColumn("elements").RightAligned()).AddColumn(new TableColumn("bytes").RightAligned());
        foreach (var ti in f.Tensors)
            tensors.AddRow(E(Escape(ti.Name, 120)), ti.Type.ToString(), Shape(ti.Shape), ti.ElementCount.ToString("N0", CultureInfo.InvariantCulture), ti.ByteSize.ToString("N0", CultureInfo.InvariantCulture));
        foreach (var g in f.Tensors.GroupBy(t => t.Type).OrderBy(g => g.Key))
            tensors.AddRow($"[dim]{g.Count()} x[/]", g.Key.ToString(), "", g.Sum(t => t.ElementCount).ToString("N0", CultureInfo.InvariantCulture), g.Sum(t => t.ByteSize).ToString("N0", CultureInfo.InvariantCulture));
        tensors.AddRow($"[bold]total ({f.Tensors.Count})[/]", "", "", $"[bold]{totalElements.ToString("N0", CultureInfo.InvariantCulture)}[/]", $"[bold]{totalBytes.ToString("N0", CultureInfo.InvariantCulture)}[/]");
        console.Write(tensors);
    }

    // ---- JSON ----

    private static void WriteJson(GgufFile f, TextWriter output)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            w.WriteNumber("schema_version", JsonSchemaVersion);
            w.WriteString("path", f.Path);
            w.WriteNumber("file_size", f.FileLength);
            w.WriteNumber("gguf_version", f.Version);
            w.WriteNumber("alignment", f.Alignment);
            w.WriteNumber("data_offset", f.DataOffset);
            WriteStringOrNull(w, "architecture", f.Get("general.architecture")?.Value as string);
            WriteStringOrNull(w, "name", f.Get("general.name")?.Value as string);
            WriteNumberOrNull(w, "file_type", f.Get("general.file_type")?.AsInt64OrNull());

            w.WriteStartObject("hyperparameters");
            foreach (var kv in f.Metadata.Where(kv => IsHyperparameter(f, kv.Key)))
            {
                w.WritePropertyName(kv.Key);
                WriteValue(w, kv.Value.Value, full: true);
            }
            w.WriteEndObject();

            var tok = Tokenizer(f);
            w.WriteStartObject("tokenizer");
            WriteStringOrNull(w, "model", tok.Model);
            WriteStringOrNull(w, "pre", tok.Pre);
            WriteNumberOrNull(w, "token_count", tok.TokenCount);
            WriteNumberOrNull(w, "merge_count", tok.MergeCount);
            WriteNumberOrNull(w, "bos_token_id", tok.BosId);
            WriteNumberOrNull(w, "eos_token_id", tok.EosId);
            WriteNumberOrNull(w, "padding_token_id", tok.PadId);
            WriteNumberOrNull(w, "unknown_token_id", tok.UnkId);
            WriteStringOrNull(w, "bos_token", tok.BosText);
            WriteStringOrNull(w, "eos_token", tok.EosText);
            if (tok.AddBos is { } ab) w.WriteBoolean("add_bos_token", ab); else w.WriteNull("add_bos_token");
            if (tok.AddEos is { } ae) w.WriteBoolean("add_eos_token", ae); else w.WriteNull("add_eos_token");
            w.WriteBoolean("has_chat_template", tok.ChatTemplate != null);
            w.WriteEndObject();

            w.WriteStartArray("metadata");
            foreach (var kv in f.Metadata)
            {
                w.WriteStartObject();
                w.WriteString("key", kv.Key);
                w.WriteString("type", TypeName(kv.Value.Type));
                if (kv.Value.Value is GgufArray a)
                {
                    w.WriteString("element_type", TypeName(a.ElementType));
                    w.WriteNumber("count", a.Count);
                }
                w.WritePropertyName("value");
                WriteValue(w, kv.Value.Value, full: false);
                w.WriteEndObject();
            }
            w.WriteEndArray();

            w.WriteStartArray("tensors");
            foreach (var t in f.Tensors)
            {
                w.WriteStartObject();
                w.WriteString("name", t.Name);
                w.WriteString("type", t.Type.ToString());
                w.WriteStartArray("shape");
                foreach (var d in t.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteNumber("elements", t.ElementCount);
                w.WriteNumber("bytes", t.ByteSize);
                w.WriteNumber("offset", t.Offset);
                w.WriteEndObject();
            }
            w.WriteEndArray();

            w.WriteStartObject("totals");
            w.WriteNumber("tensor_count", f.Tensors.Count);
            w.WriteNumber("elements", f.Tensors.Sum(t => t.ElementCount));
            w.WriteNumber("bytes", f.Tensors.Sum(t => t.ByteSize));
            w.WriteStartArray("by_type");
            foreach (var g in f.Tensors.GroupBy(t => t.Type).OrderBy(g => g.Key))
            {
                w.WriteStartObject();
                w.WriteString("type", g.Key.ToString());
                w.WriteNumber("count", g.Count());
                w.WriteNumber("elements", g.Sum(t => t.ElementCount));
                w.WriteNumber("bytes", g.Sum(t => t.ByteSize));
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();

            w.WriteEndObject();
        }
        output.WriteLine(Encoding.UTF8.GetString(ms.ToArray()));
    }

    private static void WriteStringOrNull(Utf8JsonWriter w, string name, string? v) { if (v != null) w.WriteString(name, v); else w.WriteNull(name); }
    private static void WriteNumberOrNull(Utf8JsonWriter w, string name, long? v) { if (v != null) w.WriteNumber(name, v.Value); else w.WriteNull(name); }

    /// <summary>A metadata value as JSON: scalars as numbers/strings/booleans (non-finite floats as strings), arrays
    /// in full when <paramref name="full"/> or short, else null.</summary>
    private static void WriteValue(Utf8JsonWriter w, object v, bool full)
    {
        switch (v)
        {
            case string s: w.WriteStringValue(s); break;
            case bool b: w.WriteBooleanValue(b); break;
            case float x when float.IsFinite(x): w.WriteNumberValue(x); break;
            case double x when double.IsFinite(x): w.WriteNumberValue(x); break;
            case float or double: w.WriteStringValue(Scalar(v)); break;
            case ulong x: w.WriteNumberValue(x); break;
            case GgufArray a:
                if (!full && a.Count > MaxArrayItemsShown) { w.WriteNullValue(); break; }
                w.WriteStartArray();
                foreach (var item in a.Items) WriteValue(w, item!, full);
                w.WriteEndArray();
                break;
            case IConvertible c: w.WriteNumberValue(c.ToInt64(CultureInfo.InvariantCulture)); break;
            default: w.WriteStringValue(v.ToString()); break;
        }
    }
}
