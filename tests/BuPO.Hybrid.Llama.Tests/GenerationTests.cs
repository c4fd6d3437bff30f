using System.Text.RegularExpressions;
using BuPO.Hybrid.Tests.Support;

namespace BuPO.Hybrid.Llama.Tests;

[Collection(LlamaCollection.Name)]
public class GenerationTests(LlamaFixture fx)
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

    [Fact]
    public void GreedyMatchesStoriesReference()
    {
        var model = fx.Stories;
        var cases = ReadGreedyReference(SharedAssets.RequireFile(SharedAssets.StoriesGreedyReference));
        Assert.Equal(3, cases.Count);
        using var ctx = LlamaContext.Create(model, new LlamaContextOptions { Threads = 1, ContextSize = 256 });
        var gen = new LlamaGenerator(ctx);
        foreach (var c in cases)
        {
            // llama.cpp's SPM tokenizer gives llama2.c's prompt ids (BOS, dummy-prefix space).
            Assert.Equal(c.PromptIds, model.Vocab.Encode(c.Prompt));
            var r = gen.Generate([c.PromptIds], new GenerationOptions
            {
                MaxTokens = c.Ids.Length - c.PromptIds.Length, Sampling = LlamaSamplerOptions.Greedy, StopAtEndOfGeneration = false,
            })[0];
            Assert.Equal(c.Ids, c.PromptIds.Concat(r.Tokens).ToArray());
            Assert.Equal(GenerationStopReason.MaxTokens, r.StopReason);
            Assert.All(r.BehaviorLogProbs, lp => Assert.Equal(0f, lp));
            Assert.All(r.RawLogProbs, lp => Assert.True(lp <= 0 && float.IsFinite(lp)));
        }
    }

    private static readonly string[] Prompts =
    [
        "Once upon a time", "Lily", "One day, Lily met a Shoggoth", "The cat sat on the mat and looked at the big red ball",
        "Tom", "The sun was shining", "Sam and his mom went to the park to play", "A little bird",
        "She was sad", "Once upon a time, there was a boy named Tim. He liked to run.", "The dog", "They went home",
        "Ben had a toy car", "It was a rainy day and the children stayed inside", "Mom said", "The big tree",
    ];

    [Fact]
    public void BatchedGreedyEqualsOneAtATime()
    {
        var model = fx.Stories;
        var prompts = Prompts.Select(p => model.Vocab.Encode(p)).ToArray();
        Assert.Equal(16, prompts.Select(p => p.Length).Count());
        Assert.True(prompts.Select(p => p.Length).Distinct().Count() >= 8, "prompts should have different lengths");
        var options = new GenerationOptions { MaxTokens = 24, Sampling = LlamaSamplerOptions.Greedy, StopAtEndOfGeneration = false };

        // Batch size 64 < total prompt tokens: the prompts are also decoded in several chunks.
        using var batched = LlamaContext.Create(model, new LlamaContextOptions { Threads = 1, ContextSize = 1024, MaxSequences = 16, BatchSize = 64 });
        var together = new LlamaGenerator(batched).Generate(prompts, options);
        Assert.True(prompts.Sum(p => p.Length) > 64);

        using var single = LlamaContext.Create(model, new LlamaContextOptions { Threads = 1, ContextSize = 256 });
        var gen = new LlamaGenerator(single);
        double maxDiff = 0;
        for (int i = 0; i < prompts.Length; i++)
        {
            var alone = gen.Generate([prompts[i]], options)[0];
            Assert.Equal(alone.Tokens, together[i].Tokens);
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
    public void SampledGenerationIsReproducible()
    {
        var model = fx.Stories;
        using var ctx = LlamaContext.Create(model, new LlamaContextOptions { Threads = 1, ContextSize = 2048, MaxSequences = 4 });
        var gen = new LlamaGenerator(ctx);
        var options = new GenerationOptions { MaxTokens = 200, Sampling = new LlamaSamplerOptions { Temperature = 1f, Seed = 7 } };
        var a = gen.Generate(["Once upon a time", "Once upon a time", "Lily", "Tom"], options);
        var b = gen.Generate(["Once upon a time", "Once upon a time", "Lily", "Tom"], options);
        for (int i = 0; i < 4; i++) Assert.Equal(a[i].Tokens, b[i].Tokens);
        Assert.NotEqual(a[0].Tokens, a[1].Tokens); // seed + sequence index: different streams
        foreach (var s in a)
        {
            Assert.Equal(s.Tokens.Length, s.RawLogProbs.Length);
            for (int t = 0; t < s.Tokens.Length; t++) Assert.Equal(s.RawLogProbs[t], s.BehaviorLogProbs[t], 1e-4f); // T = 1, no truncation
            if (s.StopReason == GenerationStopReason.EndOfGeneration)
            {
                Assert.True(model.Vocab.IsEndOfGeneration(s.Tokens[^1]));
                Assert.DoesNotContain(s.Tokens[..^1], model.Vocab.IsEndOfGeneration);
            }
            else Assert.Equal(200, s.Tokens.Length);
        }
        // The text is the continuation: the prompt text followed by it re-tokenizes to the ids (stories260K's pieces
        // are plain text), and it is what llama_detokenize gives for prompt + continuation after the prompt's text.
        foreach (var s in a)
        {
            var full = model.Vocab.Decode(s.PromptTokens.Concat(s.Tokens).ToArray(), removeSpecial: true);
            Assert.EndsWith(s.Text, full);
        }
    }
}
