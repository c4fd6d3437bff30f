using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using BuPO.Hybrid.Data;
using Spectre.Console;
using BuPO.Hybrid.RL.Rewards;

namespace BuPO.Hybrid.Cli.Commands.Bench;

/// <summary>
/// <c>bupo-hybrid bench verify</c>: the math verifier's speed (responses verified per second, strict and symbolic mode,
/// single-threaded) on responses built from DeepMath-5k and MATH500 gold answers, and the share of those gold answers the
/// symbolic parser reads.
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
            var datasets = new List<(string Name, IReadOnlyList<PromptItem> Items)>();
            foreach (var name in new[] { "deepmath5k", "math500" })
            {
                try { datasets.Add((name, PromptDataset.Load(name))); }
                catch (BupoException e) { throw new BupoException($"bench verify needs the shared {name} data: {e.Message}"); }
            }

            var parseTable = new Table { Title = new TableTitle("gold answers the symbolic parser reads") };
            parseTable.AddColumns("dataset", "gold answers", "read", "share", "of which words");
            foreach (var c in parseTable.Columns.Skip(1)) c.RightAligned();
            var rows = new JsonArray();
            foreach (var (name, items) in datasets)
            {
                var golds = items.Where(i => i.Answer != null).Select(i => i.Answer!).ToList();
                int read = 0, words = 0;
                foreach (var g in golds)
                    if (MathAnswerVerifier.ParsesAsMath(g, out var isText)) { read++; if (isText) words++; }
                var share = golds.Count == 0 ? double.NaN : (double)read / golds.Count;
                parseTable.AddRow(name, golds.Count.ToString("N0", CultureInfo.InvariantCulture), read.ToString("N0", CultureInfo.InvariantCulture),
                    BenchCommon.F(100 * share, 1) + "%", words.ToString(CultureInfo.InvariantCulture));
                rows.Add(new JsonObject { ["dataset"] = name, ["gold_answers"] = golds.Count, ["read"] = read, ["share"] = BenchCommon.Num(share), ["words"] = words });
            }
            console.Write(parseTable);

            // Half the responses box their own item's answer, half the next item's: both verdicts are timed.
            var pool = datasets.SelectMany(d => d.Items).Where(i => i.Answer != null).ToList();
            var work = new (string Response, string Reference)[count];
            for (var k = 0; k < count; k++)
            {
                var item = pool[k / 2 % pool.Count];
                var boxed = k % 2 == 0 ? item.Answer! : pool[(k / 2 + 1) % pool.Count].Answer!;
                work[k] = ($"{item.Problem}\n\nReasoning step by step, we find that the answer is $\\boxed{{{boxed}}}$.", item.Answer!);
            }
            var sets = new List<(string Name, (string Response, string Reference)[] Work)> { ("dataset golds", work) };
            // The peer graders' cases (relations, matrices, long responses, unboxed answers), cycled: the symbolic path's harder inputs.
            var peerFile = BenchCommon.SharedDir() is { } shared ? Path.Combine(shared, "data", "verifier", "peer-cases.jsonl") : null;
            if (peerFile != null && File.Exists(peerFile))
            {
                var peers = File.ReadLines(peerFile).Where(l => l.Length > 0).Select(l => JsonNode.Parse(l)!)
                    .Select(o => ((string)o["response"]!, (string)o["gold"]!)).ToArray();
                sets.Add(("peer cases", Enumerable.Range(0, count).Select(k => peers[k % peers.Length]).ToArray()));
            }
            var timeTable = new Table { Title = new TableTitle(Markup.Escape($"bench verify: {count:N0} responses per row, one thread")) };
            timeTable.AddColumns("responses", "mode", "seconds", "responses/s", "µs/response", "accepted");
            foreach (var c in timeTable.Columns.Skip(2)) c.RightAligned();
            foreach (var (setName, items) in sets)
            foreach (var mode in new[] { VerifierMode.Strict, VerifierMode.Symbolic })
            {
                var verifier = new MathAnswerVerifier(new VerifierOptions { Mode = mode });
                for (var k = 0; k < Math.Min(200, count); k++) verifier.Verify(items[k].Response, items[k].Reference); // JIT warm-up
                var accepted = 0;
                var sw = Stopwatch.StartNew();
                foreach (var (response, reference) in items)
                    if (verifier.Verify(response, reference).Correct) accepted++;
                var seconds = sw.Elapsed.TotalSeconds;
                timeTable.AddRow(setName, mode.ToString(), BenchCommon.F(seconds, 3), BenchCommon.F(count / seconds, 0), BenchCommon.F(1e6 * seconds / count, 1),
                    accepted.ToString("N0", CultureInfo.InvariantCulture));
                rows.Add(new JsonObject { ["responses"] = setName, ["mode"] = mode.ToString(), ["count"] = count, ["seconds"] = BenchCommon.Num(seconds), ["accepted"] = accepted });
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
