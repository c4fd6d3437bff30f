#pragma warning disable xUnit1051 // short llama.cpp runs; cancellation has its own test
using BuPO.Hybrid.Data;
using BuPO.Hybrid.Rollout;
using BuPO.Hybrid.Rollout.Tests;
using BuPO.Hybrid.RL.Evaluation;
using BuPO.Hybrid.RL.Rewards;
using BuPO.Hybrid.RL.Training;

namespace BuPO.Hybrid.RL.Tests.Rollouts;

[Collection(RolloutCollection.Name)]
public class EvaluatorTests(RolloutFixture fx)
{
    private string WriteJsonl(params (string Problem, string Answer)[] rows)
    {
        var path = Path.Combine(fx.Dir, $"eval-{Guid.NewGuid():N}.jsonl");
        File.WriteAllLines(path, rows.Select(r => System.Text.Json.JsonSerializer.Serialize(new { problem = r.Problem, answer = r.Answer })));
        return path;
    }

    [Fact]
    public void PassAtKAndAvgAtKFollowTheRecordedCorrectness()
    {
        var path = WriteJsonl(("Once upon a time", "e"), ("The dog", "z"), ("Tom said", "q"), ("One day", "the"));
        using var engine = new RolloutEngine(fx.StoriesShaped, new RolloutEngineOptions { Parallel = 8, Threads = 1 });
        // correct = the response contains the reference string: letters a random model writes sometimes, not always
        var reward = new DelegateReward((item, response) => response.Contains(item.Answer!, StringComparison.Ordinal) ? 1.0 : 0.0);
        var options = new EvalOptions { K = 8, Template = "raw", Sampling = new RolloutSampling { MaxTokens = 12 }, Seed = 3, Reward = reward };
        var r = Evaluator.Run(engine, path, options);
        Assert.Equal(Path.GetFileNameWithoutExtension(path), r.Dataset);
        Assert.Equal("raw", r.Template);
        Assert.Equal(4, r.Problems.Count);
        Assert.All(r.Problems, p => Assert.Equal(8, p.Correct.Length));
        var counts = r.Problems.Select(p => p.Correct.Count(c => c)).ToArray();
        Assert.Contains(counts, c => c > 0 && c < 8);   // a mix, so pass@k differs from avg@k
        Assert.Equal(counts.Average(c => c / 8.0), r.Score.AvgAtK, 12);
        Assert.Equal([1, 2, 4, 8], r.Score.PassAtKByK.Keys);
        foreach (var (k, v) in r.Score.PassAtKByK)
            Assert.Equal(counts.Average(c => PassAtK.Estimate(8, c, k)), v, 12);
        Assert.Equal(counts.Sum(), r.Score.TotalCorrect);
        Assert.Equal(32, r.Score.TotalSamples);
        Assert.Equal(r.Problems.Sum(p => p.ResponseTokens.Sum()), r.Stats.GeneratedTokens);

        // same seed, same verdicts; explicit k list
        var again = Evaluator.Run(engine, path, options with { PassKs = [1, 3] });
        Assert.Equal(counts, again.Problems.Select(p => p.Correct.Count(c => c)));
        Assert.Equal([1, 3], again.Score.PassAtKByK.Keys);
        Assert.Equal(counts.Average(c => PassAtK.Estimate(8, c, 3)), again.Score.PassAtKByK[3], 12);
    }

    /// <summary>Answers from a script instead of a model: prompt i's sample g says <c>texts[i][g]</c>.</summary>
    private sealed class ScriptedGenerator(string[][] texts) : IRolloutGenerator
    {
        public List<RolloutRequest> Requests { get; } = [];

        public RolloutStats LastStats { get; private set; } = new(0, 0);

        public IReadOnlyList<RolloutResult> Generate(RolloutRequest request, IProgress<int>? completed = null, CancellationToken ct = default)
        {
            Requests.Add(request);
            var results = new List<RolloutResult>();
            for (int i = 0; i < request.PromptTokens.Count; i++)
                for (int g = 0; g < request.SamplesPerPrompt; g++)
                    results.Add(new RolloutResult(i, g, request.PromptTokens[i], [5, 6, 7], [0f, 0f, 0f], [0f, 0f, 0f], texts[i][g], FinishReason.MaxTokens));
            LastStats = new RolloutStats(results.Count * 3, 1);
            return results;
        }
    }

    [Fact]
    public void TheMathVerifierScoresBoxedAnswers()
    {
        var path = WriteJsonl(("2+2", "4"), ("3+3", "6"), ("1+2", "3"));
        using var engine = new RolloutEngine(fx.TinyLlama, new RolloutEngineOptions { Parallel = 4, Threads = 1 });
        // Known verdicts: 2 of 4 right on the first problem (one wrong box, one unboxed), 1 of 4 on the second (the last box
        // counts), none on the third: avg@4 = (2/4 + 1/4 + 0) / 3 = 0.25. Unwired or always-wrong scoring gives 0.
        var generator = new ScriptedGenerator([
            ["so \\boxed{4}", "\\boxed{5}", "4", "The answer is \\boxed{4}."],
            ["\\boxed{6} no, \\boxed{7}", "\\boxed{7} no, \\boxed{6}", "six", "\\boxed{}"],
            ["\\boxed{4}", "\\boxed{2}", "3", "\\boxed{33}"],
        ]);
        var r = Evaluator.Run(engine, path, new EvalOptions { K = 4, Sampling = new RolloutSampling { MaxTokens = 8 } }, generator: generator);
        Assert.Equal("boxed", r.Template);              // no chat template, not qwen3
        var request = Assert.Single(generator.Requests);
        Assert.Equal(4, request.SamplesPerPrompt);
        Assert.Equal(PromptTemplates.Encode("boxed", "3+3", engine), request.PromptTokens[1]);
        Assert.Equal([[true, false, false, true], [false, true, false, false], [false, false, false, false]], r.Problems.Select(p => p.Correct));
        Assert.Equal(new string?[] { "4", "5", null, "4" }, r.Problems[0].Extracted.ToArray());
        Assert.Equal("6", r.Problems[1].Extracted[1]);
        Assert.Equal(0.25, r.Score.AvgAtK, 12);
        Assert.Equal(3, r.Score.TotalCorrect);
        Assert.Equal((PassAtK.Estimate(4, 2, 1) + PassAtK.Estimate(4, 1, 1)) / 3, r.Score.PassAtKByK[1], 12);
        Assert.Equal(2.0 / 3, r.Score.PassAtKByK[4], 12);
        Assert.Equal(36, r.Stats.GeneratedTokens);      // the generator's stats, not the unused engine's
    }

    [Fact]
    public void OnTheEngineEachVerdictIsTheVerifiersOnTheSampledText()
    {
        // The engine path end to end: llama.cpp samples, and each verdict and extraction is the verifier's on that text.
        var path = WriteJsonl(("2+2", "4"), ("3+3", "6"));
        using var engine = new RolloutEngine(fx.TinyLlama, new RolloutEngineOptions { Parallel = 4, Threads = 1 });
        var r = Evaluator.Run(engine, path, new EvalOptions { K = 2, Sampling = new RolloutSampling { MaxTokens = 8 } });
        var verifier = new MathAnswerVerifier();
        foreach (var p in r.Problems)
            for (int g = 0; g < 2; g++)
            {
                var v = verifier.Verify(p.Responses[g], p.Reference);
                Assert.Equal(v.Correct, p.Correct[g]);
                Assert.Equal(v.Extracted, p.Extracted[g]);
                Assert.InRange(p.ResponseTokens[g], 1, 8);
            }
        Assert.Equal(r.Problems.Sum(p => p.ResponseTokens.Sum()), r.Stats.GeneratedTokens);
    }

    [Fact]
    public void BadOptionsAreClearErrors()
    {
        var path = WriteJsonl(("2+2", "4"));
        using var engine = new RolloutEngine(fx.TinyLlama, new RolloutEngineOptions { Parallel = 2, Threads = 1 });
        Assert.Contains("k must be", Assert.Throws<BupoException>(() => Evaluator.Run(engine, path, new EvalOptions { K = 0 })).Message);
        Assert.Contains("pass@4", Assert.Throws<BupoException>(() => Evaluator.Run(engine, path, new EvalOptions { K = 2, PassKs = [4] })).Message);
        Assert.Contains("no reference answer", Assert.Throws<BupoException>(() =>
            Evaluator.Run(engine, "x", [new PromptItem("a", "1+1", null)], new EvalOptions { K = 1 })).Message);
        Assert.Contains("unknown prompt template", Assert.Throws<BupoException>(() =>
            Evaluator.Run(engine, path, new EvalOptions { K = 1, Template = "nope" })).Message);
    }
}

public class PromptTemplateTests
{
    [Fact]
    public void NamedTemplates()
    {
        Assert.Equal("What is 2+2?", PromptTemplates.Format("raw", "What is 2+2?"));
        Assert.Equal("What is 2+2? Please reason step by step, and put your final answer within \\boxed{}.\n", PromptTemplates.Format("boxed", "What is 2+2?"));
        Assert.Equal("<|im_start|>user\nWhat is 2+2? Please reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n" +
                     "<|im_start|>assistant\n<think>\n\n</think>\n\n", PromptTemplates.Format("qwen3_no_thinking", "What is 2+2?"));
        Assert.Equal("[user] What is 2+2? Please reason step by step, and put your final answer within \\boxed{}.",
            PromptTemplates.Format("chat", "What is 2+2?", m => string.Join("", m.Select(x => $"[{x.Role}] {x.Content}"))));
        Assert.Throws<BupoException>(() => PromptTemplates.Format("chat", "x"));
        Assert.Throws<BupoException>(() => PromptTemplates.Format("auto", "x"));
        Assert.Contains("unknown prompt template", Assert.Throws<BupoException>(() => PromptTemplates.Format("nope", "x")).Message);
        Assert.Equal(PromptTemplates.Format("qwen3_no_thinking", "x"), PromptTemplates.Format("Qwen3-No-Thinking", "x"));
    }
}

[Collection(RolloutCollection.Name)]
public class PromptTemplateModelTests(RolloutFixture fx)
{
    [Fact]
    public void Qwen3MarkupTokenizesToSpecialTokens()
    {
        using var engine = new RolloutEngine(fx.QwenTiny, new RolloutEngineOptions { Parallel = 1, Threads = 1 });
        Assert.Equal("qwen3_no_thinking", PromptTemplates.Resolve("auto", engine));
        var ids = PromptTemplates.Encode("auto", "What is 2+2?", engine);
        var imStart = engine.Tokenizer.Encode("<|im_start|>", addSpecial: false, parseSpecial: true);
        Assert.Single(imStart);
        Assert.Equal(imStart[0], ids[0]);
        Assert.Equal(2, ids.Count(t => t == imStart[0]));
        if (engine.ChatTemplate != null)
            Assert.Contains("<|im_start|>user", PromptTemplates.Format("chat", "What is 2+2?", engine));
    }

    [Fact]
    public void BosIsAddedOnce()
    {
        using var engine = new RolloutEngine(fx.TinyLlama, new RolloutEngineOptions { Parallel = 1, Threads = 1 });
        var ids = PromptTemplates.Encode("raw", "Once upon a time", engine);
        Assert.Equal(engine.Tokenizer.BosId, ids[0]);
        Assert.NotEqual(engine.Tokenizer.BosId, ids[1]);
    }
}
