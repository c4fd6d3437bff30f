#pragma warning disable xUnit1051 // short llama.cpp runs; cancellation has its own test (RolloutEngineTests)
using System.Text.RegularExpressions;
using BuPO.Hybrid.Llama;
using BuPO.Hybrid.Tests.Support;

namespace BuPO.Hybrid.Rollout.Tests;

/// <summary>What generate and analyze's generation relied on when they had a generator of their own: greedy ids equal to
/// the llama2.c reference, batched equal to one at a time, seeded sampling reproducible, text the continuation.</summary>
[Collection(RolloutCollection.Name)]
public class GenerationTests(RolloutFixture fx)
{
    /// <summary>One case of stories260K.greedy_reference.txt: the prompt text, its ids and the full greedy id sequence.</summary>
    public sealed record GreedyCase(string Prompt, int[] PromptIds, int[] Ids);

    /// <summary>Parses "## prompt: 'TEXT'|(empty), N steps" sections with their "prompt ids:" and "ids:" lines.</summary>
    public static List<GreedyCase> ReadGreedyReference(string path)
    {
        var cases = new List<GreedyCase>();
        string? prompt = null;
        int[]? promptIds = null;
        foreach (var line in File.ReadLines(path))
        {
            if (line.StartsWith("## prompt:"))
            {
                var m = Regex.Match(line, @"^## prompt: (\(empty\)|'(.*)'), \d+ steps");
                Assert.True(m.Success, $"unexpected header: {line}");
                prompt = m.Groups[1].Value == "(empty)" ? "" : m.Groups[2].Value;
                promptIds = null;
            }
            else if (line.StartsWith("prompt ids:")) promptIds = ParseIds(line["prompt ids:".Length..]);
            else if (line.StartsWith("ids:"))
            {
                Assert.NotNull(prompt);
                Assert.NotNull(promptIds);
                cases.Add(new GreedyCase(prompt!, promptIds!, ParseIds(line["ids:".Length..])));
            }
        }
        return cases;
    }

    private static int[] ParseIds(string s) =>
        s.Trim().TrimStart('[').TrimEnd(']').Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(int.Parse).ToArray();

    /// <summary>An engine on stories260K (the reference test) or, by default, the random model of its shape.</summary>
    private RolloutEngine Engine(int parallel, bool? unified = null, string? model = null) =>
        new(model ?? fx.StoriesShaped, new RolloutEngineOptions { Parallel = parallel, Threads = 1, SamplingThreads = 1, UnifiedKvCache = unified });

    private static readonly RolloutSampling Greedy = new() { Temperature = 0, IgnoreEndOfSequence = true };

    [Fact]
    public void GreedyMatchesStoriesReference()
    {
        var cases = ReadGreedyReference(SharedAssets.RequireFile(SharedAssets.StoriesGreedyReference));
        Assert.Equal(3, cases.Count);
        using var engine = Engine(parallel: 2, model: fx.Stories);
        foreach (var c in cases)
        {
            // llama.cpp's SPM tokenizer gives llama2.c's prompt ids (BOS, dummy-prefix space).
            Assert.Equal(c.PromptIds, engine.Model.Vocab.Encode(c.Prompt));
            // Two samples of the prompt: greedy, both must be the reference (the fan-out copies the prompt's cells).
            var rs = engine.Generate(new RolloutRequest([c.PromptIds], 2, Greedy with { MaxTokens = c.Ids.Length - c.PromptIds.Length }, 1));
            foreach (var r in rs)
            {
                Assert.Equal(c.Ids, c.PromptIds.Concat(r.ResponseTokens).ToArray());
                Assert.Equal(FinishReason.MaxTokens, r.Finish);
                Assert.All(r.BehaviorLogProbs, lp => Assert.Equal(0f, lp));
                Assert.All(r.RawLogProbs, lp => Assert.True(lp <= 0 && float.IsFinite(lp)));
            }
        }
    }

    private static readonly string[] Prompts =
    [
        "Once upon a time", "Lily", "One day, Lily met a Shoggoth", "The cat sat on the mat and looked at the big red ball",
        "Tom", "The sun was shining", "Sam and his mom went to the park to play", "A little bird",
        "She was sad", "Once upon a time, there was a boy named Tim. He liked to run.", "The dog", "They went home",
        "Ben had a toy car", "It was a rainy day and the children stayed inside", "Mom said", "The big tree",
    ];

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void BatchedGreedyEqualsOneAtATime(bool unified)
    {
        using var batched = Engine(parallel: 16, unified);
        var prompts = Prompts.Select(p => batched.Model.Vocab.Encode(p)).ToArray();
        Assert.True(prompts.Select(p => p.Length).Distinct().Count() >= 8, "prompts should have different lengths");
        var sampling = Greedy with { MaxTokens = 24 };
        var together = batched.Generate(new RolloutRequest(prompts, 1, sampling, 1));

        using var single = Engine(parallel: 1, unified);
        double maxDiff = 0;
        for (int i = 0; i < prompts.Length; i++)
        {
            var alone = single.Generate(new RolloutRequest([prompts[i]], 1, sampling, 1))[0];
            Assert.Equal(alone.ResponseTokens, together[i].ResponseTokens);
            Assert.Equal(alone.Text, together[i].Text);
            // Batched products sum in another order and the K/V rounding to F16 can amplify that:
            // log-probs agree to a few 1e-3, not bit for bit.
            for (int t = 0; t < alone.RawLogProbs.Length; t++)
            {
                maxDiff = Math.Max(maxDiff, Math.Abs(alone.RawLogProbs[t] - together[i].RawLogProbs[t]));
                Assert.Equal(alone.RawLogProbs[t], together[i].RawLogProbs[t], 1e-2f);
            }
        }
        TestContext.Current.TestOutputHelper?.WriteLine($"max |logprob batched - alone| = {maxDiff:G3}");
    }

    [Fact]
    public void SampledGenerationIsReproducibleAndItsTextIsTheContinuation()
    {
        using var engine = Engine(parallel: 4);
        var vocab = engine.Model.Vocab;
        var prompts = new[] { "Once upon a time", "Lily", "Tom" }.Select(p => vocab.Encode(p)).ToArray();
        var request = new RolloutRequest(prompts, 2, new RolloutSampling { Temperature = 1, MaxTokens = 200 }, 7);
        var a = engine.Generate(request);
        var b = engine.Generate(request);
        for (int i = 0; i < a.Count; i++) Assert.Equal(a[i].ResponseTokens, b[i].ResponseTokens);
        Assert.NotEqual(a[0].ResponseTokens, a[1].ResponseTokens); // two samples of one prompt: different streams
        foreach (var s in a)
        {
            Assert.Equal(s.ResponseTokens.Length, s.RawLogProbs.Length);
            for (int t = 0; t < s.ResponseTokens.Length; t++) Assert.Equal(s.RawLogProbs[t], s.BehaviorLogProbs[t], 1e-4f); // T = 1, no truncation
            if (s.Finish == FinishReason.EndOfSequence)
            {
                Assert.True(vocab.IsEndOfGeneration(s.ResponseTokens[^1]));
                Assert.DoesNotContain(s.ResponseTokens[..^1], vocab.IsEndOfGeneration);
            }
            else Assert.Equal(200, s.ResponseTokens.Length);
            // The text is the continuation: llama_detokenize of prompt + response ends with it.
            var full = vocab.Decode(s.PromptTokens.Concat(s.ResponseTokens).ToArray(), removeSpecial: true);
            Assert.EndsWith(s.Text, full);
        }
    }
}
