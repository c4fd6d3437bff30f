using System.CommandLine;
using System.Text.Json.Nodes;
using BuPO.Hybrid.Bench;
using BuPO.Hybrid.Bench.Tokenization;
using BuPO.Hybrid.Llama;
using Spectre.Console;

namespace BuPO.Hybrid.Cli.Commands.Bench;

/// <summary>
/// <c>bupo-hybrid bench tokenize</c>: parses the options of <see cref="TokenizerBenchmark"/> (managed vs llama.cpp
/// tokenization on the same texts) and renders its result; texts whose ids differ are printed and make the exit code 1.
/// </summary>
public static class BenchTokenizeCommand
{
    public static Command Create()
    {
        var source = new BenchModelSource();
        var lines = new Option<int?>("--lines") { Description = "Use only the first N texts (default: all GSM8K + MATH500 test texts, or 2,000 generated)" };
        var minSeconds = new Option<double>("--min-seconds") { Description = "Encode the texts repeatedly for at least this long per tokenizer (after a warm-up pass)", DefaultValueFactory = _ => 2.0 };
        var addSpecial = new Option<bool>("--add-special") { Description = "Add BOS/EOS as the model does" };
        var parseSpecial = new Option<bool>("--parse-special") { Description = "Parse special-token text (<|im_start|>, ...) into special tokens" };
        var generated = new Option<bool>("--generated-text") { Description = "Use generated word problems even when the shared GSM8K/MATH500 data exist" };
        var libDir = new Option<string?>("--llama-lib-dir") { Description = $"Folder of the llama.cpp libraries (default: ${LlamaBackend.LibDirEnvironmentVariable}, then the bundled build)" };
        var json = BenchCommon.JsonOption();

        var cmd = new Command("tokenize", "Managed vs llama.cpp tokenization throughput on the same texts, and the texts whose ids differ (must be 0)");
        source.AddTo(cmd);
        foreach (var o in new Option[] { lines, minSeconds, addSpecial, parseSpecial, generated, libDir, json }) cmd.Options.Add(o);
        cmd.SetAction(parse =>
        {
            var stdout = parse.InvocationConfiguration.Output;
            var stderr = parse.InvocationConfiguration.Error;
            var limit = parse.GetValue(lines);
            if (limit is <= 0) throw new BupoException($"--lines must be positive, got {limit}");
            var seconds = parse.GetValue(minSeconds);
            if (!(seconds >= 0) || !double.IsFinite(seconds)) throw new BupoException($"--min-seconds must be >= 0, got {seconds}");
            source.Validate(parse);

            var console = CliConsole.Create(stdout);
            LlamaBackend.Initialize(parse.GetValue(libDir), minLevel: LlamaLogLevel.Error);
            var model = source.Resolve(parse, m => BenchCommon.Log(stderr, m));

            var add = parse.GetValue(addSpecial);
            var special = parse.GetValue(parseSpecial);
            var result = TokenizerBenchmark.Run(model, new TokenizeBenchmarkSettings
            {
                Lines = limit, MinSeconds = seconds, AddSpecial = add, ParseSpecial = special, GeneratedText = parse.GetValue(generated),
                DataDir = parse.GetValue(generated) ? null : BenchAssets.DataDir(),
            }, m => BenchCommon.Log(stderr, m));
            var r = result.Comparison;
            var textSource = result.TextSource;
            var chars = result.Chars;
            var table = new Table { Title = new TableTitle(Markup.Escape($"bench tokenize: {model.Label}, {result.Texts} texts ({chars:N0} chars)")) };
            table.AddColumns("tokenizer", "tokens", "seconds", "tokens/s", "vs llama.cpp");
            foreach (var c in table.Columns.Skip(1)) c.RightAligned();
            var rows = new JsonArray();
            foreach (var t in new[] { r.A, r.B })
            {
                var vs = t.TokensPerSecond / r.B.TokensPerSecond;
                table.AddRow(Markup.Escape(t.Name), t.Tokens.ToString("N0", System.Globalization.CultureInfo.InvariantCulture), BenchCommon.F(t.Seconds, 3),
                    BenchCommon.F(t.TokensPerSecond, 0), BenchCommon.Ratio(vs));
                rows.Add(new JsonObject
                {
                    ["tokenizer"] = t.Name,
                    ["tokens"] = t.Tokens,
                    ["seconds"] = BenchCommon.Num(t.Seconds),
                    ["tokens_per_second"] = BenchCommon.Num(t.TokensPerSecond, 1),
                    ["speedup_vs_llama"] = BenchCommon.Num(vs),
                });
            }
            console.Write(table);
            console.WriteLine($"texts whose ids differ: {r.MismatchedLines} of {r.Lines} (must be 0); add special {add}, parse special {special}; both single-threaded, measured one after the other.");
            console.WriteLine($"text: {textSource}");
            console.WriteLine(model.Note);
            console.WriteLine(BenchCommon.MachineNote());
            if (parse.GetValue(json) is { } file)
            {
                var settings = new JsonObject
                {
                    ["texts"] = result.Texts, ["chars"] = chars, ["text_source"] = textSource, ["min_seconds"] = seconds,
                    ["add_special"] = add, ["parse_special"] = special, ["mismatched_lines"] = r.MismatchedLines,
                    ["speedup_managed_vs_llama"] = BenchCommon.Num(r.Speedup),
                };
                BenchCommon.WriteJson(file, BenchCommon.Document("tokenize", model, settings, rows), console);
            }
            if (r.MismatchedLines > 0)
            {
                parse.InvocationConfiguration.Error.WriteLine($"error: the managed tokenizer's ids differ from llama.cpp's on {r.MismatchedLines} of {r.Lines} texts");
                return CliHost.Failure;
            }
            return 0;
        });
        return cmd;
    }
}
