using BuPO.Hybrid.Data;

namespace BuPO.Hybrid.RL.Rewards;

/// <summary>One response to score, with the prompt it answers.</summary>
public readonly record struct RewardSample(PromptItem Prompt, string Response);

/// <summary>Scores a batch of responses. Implementations return one finite reward per sample, in order.</summary>
public interface IRewardFunction
{
    /// <summary>A short name for logs.</summary>
    string Name { get; }

    /// <summary>The rewards of <paramref name="batch"/>, one per sample, in order.</summary>
    double[] Score(IReadOnlyList<RewardSample> batch);
}

/// <summary>A reward from a C# function of (prompt, response), or of a whole batch.</summary>
public sealed class DelegateReward : IRewardFunction
{
    private readonly Func<IReadOnlyList<RewardSample>, double[]> _score;

    public DelegateReward(Func<PromptItem, string, double> score, string name = "delegate")
    {
        ArgumentNullException.ThrowIfNull(score);
        _score = batch => batch.Select(s => score(s.Prompt, s.Response)).ToArray();
        Name = name;
    }

    public DelegateReward(Func<IReadOnlyList<RewardSample>, double[]> scoreBatch, string name = "delegate")
    {
        _score = scoreBatch ?? throw new ArgumentNullException(nameof(scoreBatch));
        Name = name;
    }

    public string Name { get; }

    public double[] Score(IReadOnlyList<RewardSample> batch)
    {
        var rewards = _score(batch);
        if (rewards.Length != batch.Count)
            throw new BupoException($"reward function '{Name}' returned {rewards.Length} rewards for {batch.Count} samples");
        for (var i = 0; i < rewards.Length; i++)
            if (!double.IsFinite(rewards[i]))
                throw new BupoException($"reward function '{Name}' returned {rewards[i]} for sample {i} (prompt '{batch[i].Prompt.Id}'); rewards must be finite");
        return rewards;
    }
}

/// <summary>
/// BuPO's rule-based reward: 1 when the response's boxed final answer matches the prompt's reference answer under
/// <see cref="MathAnswerVerifier"/> (by default its symbolic mode; <see cref="VerifierMode.Strict"/>: the last box, as strings), else 0.
/// </summary>
public sealed class MathReward(MathAnswerVerifier? verifier = null) : IRewardFunction
{
    public MathAnswerVerifier Verifier { get; } = verifier ?? new MathAnswerVerifier();

    public string Name => "math";

    public double[] Score(IReadOnlyList<RewardSample> batch) => Verify(batch).Select(r => r.Reward).ToArray();

    /// <summary>The verifier's verdict for each sample (extracted and normalized answers, for logs and evaluation).</summary>
    public VerificationResult[] Verify(IReadOnlyList<RewardSample> batch)
    {
        var results = new VerificationResult[batch.Count];
        for (var i = 0; i < batch.Count; i++)
        {
            var p = batch[i].Prompt;
            if (p.Answer == null)
                throw new BupoException($"{Where(p)}: prompt '{p.Id}' has no reference answer, which the math reward needs (use --answer-field or a reward command)");
            results[i] = Verifier.Verify(batch[i].Response, p.Answer);
        }
        return results;
    }

    private static string Where(PromptItem p) => p.Source.Length > 0 ? $"{p.Source}:{p.Line}" : "dataset";
}
