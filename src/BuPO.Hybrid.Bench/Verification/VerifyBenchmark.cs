using System.Diagnostics;
using System.Text.Json.Nodes;
using BuPO.Hybrid.Data;
using BuPO.Hybrid.RL.Rewards;

namespace BuPO.Hybrid.Bench.Verification;

/// <summary>
/// The math verifier's speed (responses verified per second, strict and symbolic mode, single-threaded) on responses built
/// from datasets' gold answers, and the share of those gold answers the symbolic parser reads.
/// </summary>
public static class VerifyBenchmark
{
    /// <summary>The datasets <c>bench verify</c> uses: DeepMath-5k and MATH500 from the shared data folder.</summary>
    public static IReadOnlyList<(string Name, IReadOnlyList<PromptItem> Items)> LoadSharedDatasets()
    {
        var datasets = new List<(string Name, IReadOnlyList<PromptItem> Items)>();
        foreach (var name in new[] { "deepmath5k", "math500" })
        {
            try { datasets.Add((name, PromptDataset.Load(name))); }
            catch (BupoException e) { throw new BupoException($"bench verify needs the shared {name} data: {e.Message}"); }
        }
        return datasets;
    }

    /// <summary>../shared/data/verifier/peer-cases.jsonl, or null.</summary>
    public static string? SharedPeerCasesFile() =>
        BenchAssets.SharedDir() is { } shared ? Path.Combine(shared, "data", "verifier", "peer-cases.jsonl") : null;

    /// <summary>Parses every gold answer, then times both modes on each set of responses.</summary>
    public static VerifyBenchmarkResult Run(VerifyBenchmarkSettings settings)
    {
        ArgumentNullException.ThrowIfNull(settings);
        var count = settings.Responses;
        var parses = new List<GoldParseResult>();
        foreach (var (name, items) in settings.Datasets)
        {
            var golds = items.Where(i => i.Answer != null).Select(i => i.Answer!).ToList();
            int read = 0, words = 0;
            foreach (var g in golds)
                if (MathAnswerVerifier.ParsesAsMath(g, out var isText)) { read++; if (isText) words++; }
            parses.Add(new GoldParseResult(name, golds.Count, read, words));
        }

        // Half the responses box their own item's answer, half the next item's: both verdicts are timed.
        var pool = settings.Datasets.SelectMany(d => d.Items).Where(i => i.Answer != null).ToList();
        if (pool.Count == 0) throw new BupoException("bench verify: the datasets hold no gold answers");
        var work = new (string Response, string Reference)[count];
        for (var k = 0; k < count; k++)
        {
            var item = pool[k / 2 % pool.Count];
            var boxed = k % 2 == 0 ? item.Answer! : pool[(k / 2 + 1) % pool.Count].Answer!;
            work[k] = ($"{item.Problem}\n\nReasoning step by step, we find that the answer is $\\boxed{{{boxed}}}$.", item.Answer!);
        }
        var sets = new List<(string Name, (string Response, string Reference)[] Work)> { ("dataset golds", work) };
        // The peer graders' cases (relations, matrices, long responses, unboxed answers), cycled: the symbolic path's harder inputs.
        if (settings.PeerCasesFile is { } peerFile && File.Exists(peerFile))
        {
            var peers = File.ReadLines(peerFile).Where(l => l.Length > 0).Select(l => JsonNode.Parse(l)!)
                .Select(o => ((string)o["response"]!, (string)o["gold"]!)).ToArray();
            sets.Add(("peer cases", Enumerable.Range(0, count).Select(k => peers[k % peers.Length]).ToArray()));
        }
        var timings = new List<VerifyTiming>();
        foreach (var (setName, items) in sets)
            foreach (var mode in new[] { VerifierMode.Strict, VerifierMode.Symbolic })
            {
                var verifier = new MathAnswerVerifier(new VerifierOptions { Mode = mode });
                for (var k = 0; k < Math.Min(200, count); k++) verifier.Verify(items[k].Response, items[k].Reference); // JIT warm-up
                var accepted = 0;
                var sw = Stopwatch.StartNew();
                foreach (var (response, reference) in items)
                    if (verifier.Verify(response, reference).Correct) accepted++;
                timings.Add(new VerifyTiming(setName, mode, items.Length, sw.Elapsed.TotalSeconds, accepted));
            }
        return new VerifyBenchmarkResult(parses, timings);
    }
}
