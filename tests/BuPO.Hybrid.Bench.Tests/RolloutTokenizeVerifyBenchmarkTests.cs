using BuPO.Hybrid.Bench.Rollouts;
using BuPO.Hybrid.Bench.Text;
using BuPO.Hybrid.Bench.Tokenization;
using BuPO.Hybrid.Bench.Verification;
using BuPO.Hybrid.Data;
using BuPO.Hybrid.RL.Rewards;
using BuPO.Hybrid.Tests.Support;

namespace BuPO.Hybrid.Bench.Tests;

[Collection("bench")]
public class RolloutTokenizeVerifyBenchmarkTests(BenchFixture fx)
{
    [Fact]
    public void RolloutRowsCountBatchTimesGeneratedTokensAndTheRatioIsEngineOverRaw()
    {
        var options = new RolloutBenchmarkOptions { BatchSizes = [1, 3], PromptTokens = 5, GenTokens = 4, Threads = 1, SamplingThreads = 1 };
        var rows = RolloutBenchmark.Run(fx.LlamaTiny.Path, options);
        Assert.Equal([1, 3], rows.Select(r => r.Batch));
        foreach (var r in rows)
        {
            Assert.Equal(r.Batch * 4L, r.GeneratedTokens);
            Assert.True(r.RawTokensPerSecond > 0 && r.EngineTokensPerSecond > 0);
            Assert.Equal(r.EngineTokensPerSecond / r.RawTokensPerSecond, r.Ratio, 12);
            Assert.Equal(r.GeneratedTokens / r.RawSeconds.Min(), r.RawTokensPerSecond, 6); // the fastest run
            Assert.Equal(r.GeneratedTokens / r.EngineSeconds.Min(), r.EngineTokensPerSecond, 6);
        }
    }

    [Fact]
    public void TokenizeComparesBothTokenizersOnTheChosenTexts()
    {
        var settings = new TokenizeBenchmarkSettings { Lines = 7, MinSeconds = 0, GeneratedText = true };
        var result = TokenizerBenchmark.Run(fx.QwenTiny, settings);
        var texts = BenchText.Generated(7);
        Assert.Equal(7, result.Texts);
        Assert.Equal(texts.Sum(t => (long)t.Length), result.Chars);
        Assert.StartsWith("generated word problems", result.TextSource);
        var c = result.Comparison;
        Assert.Equal(7, c.Lines);
        Assert.Equal(0, c.MismatchedLines);
        Assert.True(c.A.Tokens > 0);
        Assert.Equal(c.A.Tokens / c.A.Seconds, c.A.TokensPerSecond, 9);
        Assert.Equal(c.A.TokensPerSecond / c.B.TokensPerSecond, c.Speedup, 12);
    }

    [Fact]
    public void TokenizeTakesTheFirstLinesOfALongerSet()
    {
        var result = TokenizerBenchmark.Run(fx.QwenTiny, new TokenizeBenchmarkSettings { Lines = 3, MinSeconds = 0, GeneratedText = true });
        Assert.Equal(3, result.Texts);
        var all = TokenizerBenchmark.Run(fx.QwenTiny, new TokenizeBenchmarkSettings { MinSeconds = 0, GeneratedText = true });
        Assert.Equal(2000, all.Texts);
    }

    [Fact]
    public void VerifyCountsEveryResponseAndAcceptsTheOwnAnswersHalf()
    {
        var items = Enumerable.Range(1, 6).Select(i => new PromptItem($"q{i}", $"What is {i} + {i}?", (2 * i).ToString(System.Globalization.CultureInfo.InvariantCulture))).ToList();
        var result = VerifyBenchmark.Run(new VerifyBenchmarkSettings { Datasets = [("sums", items)], Responses = 12 });
        var parse = Assert.Single(result.GoldParses);
        Assert.Equal(("sums", 6, 6, 0), (parse.Dataset, parse.GoldAnswers, parse.Read, parse.Words));
        Assert.Equal(1.0, parse.Share);
        Assert.Equal([VerifierMode.Strict, VerifierMode.Symbolic], result.Timings.Select(t => t.Mode));
        foreach (var t in result.Timings)
        {
            Assert.Equal("dataset golds", t.Set);
            Assert.Equal(12, t.Count);
            Assert.Equal(6, t.Accepted); // even responses box their own answer, odd ones the next item's (a different number)
            Assert.Equal(12 / t.Seconds, t.ResponsesPerSecond, 6);
        }
    }
}

/// <summary>The tokenizer comparison on the real vocabularies (moved from the Llama tests with the benchmark); skips without ../shared.</summary>
[Collection("bench")]
public class TokenizerBenchmarkOnSharedVocabulariesTests(BenchFixture fx)
{
    [Fact]
    public void TheManagedTokenizerMatchesLlamaCppOnQwen2AndStories()
    {
        _ = fx; // llama.cpp initialized
        var lines = BenchText.SharedLines(BenchAssets.DataDir())?.Lines.Take(500).ToArray() ?? BenchText.Generated(500).ToArray();
        var output = new System.Text.StringBuilder();
        foreach (var (name, path) in new[] { ("qwen2", SharedAssets.RequireFile(SharedAssets.Qwen2Vocab)), ("stories260K", SharedAssets.RequireFile(SharedAssets.StoriesModel)) })
        {
            using var model = Llama.LlamaModel.Load(path, new Llama.LlamaModelOptions { VocabOnly = true });
            var c = TokenizerBenchmark.Run(Tokenizers.GgufTokenizer.FromGguf(path), model.Vocab, lines, minSeconds: 0.2, nameA: $"managed {name}", nameB: $"llama.cpp {name}");
            output.AppendLine(c.ToString());
            Assert.Equal(lines.Length, c.Lines);
            Assert.Equal(0, c.MismatchedLines);
        }
        TestContext.Current.TestOutputHelper!.WriteLine(output.ToString()); // for information: no timing assertions
    }
}
