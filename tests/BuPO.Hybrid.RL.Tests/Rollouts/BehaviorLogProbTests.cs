#pragma warning disable xUnit1051 // short llama.cpp runs; cancellation has its own test
using BuPO.Hybrid.Model;
using BuPO.Hybrid.RL.Training;
using BuPO.Hybrid.Tests.Support;
using TorchSharp;
using BuPO.Hybrid.Rollout;
using BuPO.Hybrid.Rollout.Tests;

namespace BuPO.Hybrid.RL.Tests.Rollouts;

/// <summary>
/// At T = 0.7 with top-p 0.9 the behaviour distribution (what each token was drawn from: nucleus chosen on the raw
/// probabilities, then the survivors tempered and renormalized) differs from the raw one (temperature 1, full
/// vocabulary) and from the trainer's π_old (temperature 0.7, full vocabulary). TIS must divide by the behaviour one.
/// </summary>
[Collection(RolloutCollection.Name)]
public class BehaviorLogProbTests(RolloutFixture fx)
{
    private const double T = 0.7, P = 0.9;

    /// <summary>log of the tempered probability mass of the nucleus (top-p on the raw probabilities) of one logits row.</summary>
    private static double LogNucleusMass(float[] row)
    {
        var order = Enumerable.Range(0, row.Length).OrderByDescending(i => row[i]).ToArray();
        double max = row[order[0]], z1 = row.Sum(v => Math.Exp(v - max));
        double cum = 0, kept = 0, all = row.Sum(v => Math.Exp((v - max) / T));
        foreach (var i in order)
        {
            kept += Math.Exp((row[i] - max) / T);
            cum += Math.Exp(row[i] - max) / z1;
            if (cum >= P) break;
        }
        return Math.Log(kept / all);
    }

    [Fact]
    public void TisWeightsUseTheBehaviourDistributionAtT07TopP09()
    {
        var path = fx.TinyLlama;
        TorchRuntime.EnsureInitialized();
        torch.set_num_threads(1);
        var o = new TrainOptions { Model = path, Temperature = T, TopP = P, Tis = true, TisCap = 2.0, MiniBatchPrompts = 4, MicroBatchTokens = 512, Seed = 5 };
        using var sampler = new RolloutEngineSampler(new RolloutEngine(path, new RolloutEngineOptions
        {
            Parallel = 8, Threads = 1, KvCacheType = BuPO.Hybrid.Gguf.GgmlType.F32,
        }));
        string[] texts = ["Once upon a time", "The little dog", "Tom and Lily went to the", "One day, a bird"];
        var prompts = texts.Select(t => sampler.Tokenizer.Encode(t, addSpecial: true)).ToArray();
        var responses = sampler.Generate(prompts, 2, TrainingRun.Sampling(o) with { MaxTokens = 12 }, seed: 7);
        Assert.Equal(8, responses.Count);

        // What the sampler hands on is the behaviour log-prob: log softmax(row / T)[tok] - log(tempered nucleus mass),
        // computed here from llama.cpp's logits; the raw one would be log softmax(row)[tok].
        double sumBehaviourMinusOld = 0, sumRawMinusOld = 0;
        int n = 0, truncatedSteps = 0;
        foreach (var r in responses)
        {
            var rows = RolloutReference.ResponseLogits(sampler.Engine.Model, prompts[r.PromptIndex], r.ResponseTokens);
            for (int j = 0; j < rows.Length; j++)
            {
                var old = RolloutReference.LogSoftmax(rows[j], r.ResponseTokens[j], T);   // π_old at the trainer's temperature
                var logMass = LogNucleusMass(rows[j]);
                Assert.Equal(old - logMass, r.BehaviorLogProbs[j], 2e-3);
                sumBehaviourMinusOld += r.BehaviorLogProbs[j] - old;
                sumRawMinusOld += RolloutReference.LogSoftmax(rows[j], r.ResponseTokens[j]) - old;
                if (logMass < -1e-3) truncatedSteps++;
                n++;
            }
        }
        Assert.True(truncatedSteps > n / 2, $"top-p 0.9 cut the distribution at only {truncatedSteps} of {n} steps");
        double wantKl = sumBehaviourMinusOld / n, rawKl = sumRawMinusOld / n;
        Assert.True(wantKl > 0.005, $"mean log(π_behaviour / π_old) = {wantKl}: the truncation should show");
        Assert.True(Math.Abs(rawKl - wantKl) > 0.02, $"raw and behaviour log-probs give the same mismatch ({rawKl} vs {wantKl}): the test could not tell them apart");

        // The trainer, fed the way a training step feeds it: its first mini-batch's π_old is the sampler's model (stories260K
        // in TorchSharp at T = 0.7), so its mismatch is exactly log(π_behaviour / π_old) averaged, and every TIS weight
        // π_old / π_behaviour (the tempered nucleus mass) is at most 1: none reaches the cap.
        var seqs = TrainingRun.TrainingSequences(responses, p => prompts[p], responses.Select((_, i) => i % 2 == 0 ? 1.0 : -1.0).ToArray());
        Assert.All(seqs.Zip(responses), x => Assert.Same(x.Second.BehaviorLogProbs, x.First.BehaviorLogProbs));
        using var model = TransformerModel.FromGguf(path);
        using var trainer = new GrpoTrainer(model, o.Grpo);
        var stats = trainer.Update(1, seqs, null, false, 1e-6);
        TestContext.Current.TestOutputHelper?.WriteLine($"mean log(behaviour/old) {wantKl:F5}, log(raw/old) {rawKl:F5}, trainer {stats.Mismatch.MeanKl:F5}; truncated at {truncatedSteps} of {n} steps");
        Assert.Equal(wantKl, stats.Mismatch.MeanKl, 1e-3);
        Assert.Equal(0, stats.Mismatch.TruncatedFraction);
    }
}
