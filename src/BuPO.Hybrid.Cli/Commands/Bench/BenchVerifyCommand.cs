using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using BuPO.Hybrid.Bench.Verification;
using Spectre.Console;

namespace BuPO.Hybrid.Cli.Commands.Bench;

/// <summary>
/// <c>bupo-hybrid bench verify</c>: runs <see cref="VerifyBenchmark"/> (the math verifier's speed, strict and symbolic, on
/// responses built from DeepMath-5k and MATH500 gold answers, and the share of gold answers the parser reads) and renders it.
/// </summary>
public static class BenchVerifyCommand
{
    public static Command Create()
    {
        var responses = new Option<int>("--responses") { Description = "Responses to verify per mode", DefaultValueFactory = _ => 10_000 };
        var json = BenchCommon.JsonOption();
        var cmd = new Command("verify", "Math verifier: responses verified per second (strict vs symbolic, one thread) and the share of DeepMath-5k/MATH500 gold answers the parser reads");
        foreach (var o in new Option[] { responses, json }) cmd.Options.Add(o);
        cmd.SetAction(parse =>
        {
            var console = CliConsole.Create(parse.InvocationConfiguration.Output);
            var count = BenchCommon.Positive("--responses", parse.GetValue(responses));
            var result = VerifyBenchmark.Run(new VerifyBenchmarkSettings
            {
                Datasets = VerifyBenchmark.LoadSharedDatasets(), Responses = count, PeerCasesFile = VerifyBenchmark.SharedPeerCasesFile(),
            });

            var parseTable = new Table { Title = new TableTitle("gold answers the symbolic parser reads") };
            parseTable.AddColumns("dataset", "gold answers", "read", "share", "of which words");
            foreach (var c in parseTable.Columns.Skip(1)) c.RightAligned();
            var rows = new JsonArray();
            foreach (var p in result.GoldParses)
            {
                parseTable.AddRow(p.Dataset, p.GoldAnswers.ToString("N0", CultureInfo.InvariantCulture), p.Read.ToString("N0", CultureInfo.InvariantCulture),
                    BenchCommon.F(100 * p.Share, 1) + "%", p.Words.ToString(CultureInfo.InvariantCulture));
                rows.Add(new JsonObject { ["dataset"] = p.Dataset, ["gold_answers"] = p.GoldAnswers, ["read"] = p.Read, ["share"] = BenchCommon.Num(p.Share), ["words"] = p.Words });
            }
            console.Write(parseTable);

            var timeTable = new Table { Title = new TableTitle(Markup.Escape($"bench verify: {count:N0} responses per row, one thread")) };
            timeTable.AddColumns("responses", "mode", "seconds", "responses/s", "µs/response", "accepted");
            foreach (var c in timeTable.Columns.Skip(2)) c.RightAligned();
            foreach (var t in result.Timings)
            {
                timeTable.AddRow(t.Set, t.Mode.ToString(), BenchCommon.F(t.Seconds, 3), BenchCommon.F(t.ResponsesPerSecond, 0), BenchCommon.F(t.MicrosecondsPerResponse, 1),
                    t.Accepted.ToString("N0", CultureInfo.InvariantCulture));
                rows.Add(new JsonObject { ["responses"] = t.Set, ["mode"] = t.Mode.ToString(), ["count"] = t.Count, ["seconds"] = BenchCommon.Num(t.Seconds), ["accepted"] = t.Accepted });
            }
            console.Write(timeTable);
            console.WriteLine("dataset golds: each item's problem text, then a box holding its own gold answer (even responses) or the next item's (odd); peer cases: ../shared/data/verifier/peer-cases.jsonl cycled.");
            console.WriteLine(BenchCommon.MachineNote());
            if (parse.GetValue(json) is { } file)
                BenchCommon.WriteJson(file, BenchCommon.Document("verify", null, new JsonObject { ["responses"] = count }, rows), console);
            return 0;
        });
        return cmd;
    }
}
