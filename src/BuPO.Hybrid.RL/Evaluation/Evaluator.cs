using BuPO.Hybrid.Data;
using BuPO.Hybrid.Rollout;
using BuPO.Hybrid.RL.Rewards;
using BuPO.Hybrid.RL.Training;

namespace BuPO.Hybrid.RL.Evaluation;

/// <summary>Settings of <see cref="Evaluator.Run(RolloutEngine, string, IReadOnlyList{PromptItem}, EvalOptions, IProgress{int}?, CancellationToken, IRolloutGenerator?)"/>.</summary>
public sealed record EvalOptions
{
    /// <summary>Samples per problem (K of avg@K).</summary>
    public int K { get; init; } = 16;
    /// <summary>Prompt template (<see cref="PromptTemplates"/>); "auto" picks one for the model.</summary>
    public string Template { get; init; } = "auto";
    /// <summary>Sampling (the paper evaluates at temperature 1, no truncation).</summary>
    public RolloutSampling Sampling { get; init; } = new() { MaxTokens = 1024 };
    /// <summary>Base seed of the rollouts.</summary>
    public ulong Seed { get; init; }
    /// <summary>The k of pass@k; null = 1, 2, 4, ... up to K (and K).</summary>
    public IReadOnlyList<int>? PassKs { get; init; }
    /// <summary>The answer checker; null = <see cref="MathAnswerVerifier"/> with default options (symbolic mode, boxed answers only).</summary>
    public MathAnswerVerifier? Verifier { get; init; }
    /// <summary>A reward used instead of the verifier when set: a sample is correct when its reward is &gt; 0.5 (no extracted answers then).</summary>
    public IRewardFunction? Reward { get; init; }
}

/// <summary>One problem's samples, scored.</summary>
/// <param name="Id">The problem id.</param>
/// <param name="Reference">The reference answer.</param>
/// <param name="Correct">Per sample (SampleIndex order): did its final answer match.</param>
/// <param name="Extracted">Per sample: the extracted answer, or null.</param>
/// <param name="ResponseTokens">Per sample: response length in tokens.</param>
/// <param name="Finish">Per sample: why it stopped.</param>
/// <param name="Responses">Per sample: the response text.</param>
public sealed record ProblemEval(string Id, string Reference, bool[] Correct, string?[] Extracted, int[] ResponseTokens, FinishReason[] Finish, string[] Responses)
{
    /// <summary>The outcome for <see cref="PassAtK"/>.</summary>
    public ProblemOutcome Outcome => new(Id, Correct.Length, Correct.Count(c => c));
}

/// <summary>The evaluation of one dataset.</summary>
/// <param name="Dataset">Its name.</param>
/// <param name="Template">The prompt template used (resolved).</param>
/// <param name="Score">avg@K and pass@k.</param>
/// <param name="Problems">Per problem, in dataset order.</param>
/// <param name="Stats">RolloutResult throughput.</param>
public sealed record EvalResult(string Dataset, string Template, DatasetScore Score, IReadOnlyList<ProblemEval> Problems, RolloutStats Stats);

/// <summary>avg@K and unbiased pass@k of a model on math datasets (spec section 7): K rollouts per problem, each scored by
/// the math verifier against the reference answer.</summary>
public static class Evaluator
{
    /// <summary>Evaluates <paramref name="items"/> (each needs a reference answer). Prompt i of the rollout request is item i.</summary>
    /// <param name="engine">The sampler.</param>
    /// <param name="dataset">Name for the result.</param>
    /// <param name="items">The problems.</param>
    /// <param name="options">K, template, sampling, seed, pass@k list.</param>
    /// <param name="progress">Receives the number of finished rollouts (out of items x K).</param>
    /// <param name="ct">Cancels between decodes.</param>
    /// <exception cref="BupoException">Bad options, an item without an answer, a prompt that does not fit.</exception>
    /// <param name="generator">Samples the rollouts instead of <paramref name="engine"/> (which still gives the tokenizer and the
    /// template), e.g. a <see cref="TorchPolicySampler"/> on an internal layer policy; null = the engine.</param>
    public static EvalResult Run(RolloutEngine engine, string dataset, IReadOnlyList<PromptItem> items, EvalOptions options,
        IProgress<int>? progress = null, CancellationToken ct = default, IRolloutGenerator? generator = null)
    {
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentNullException.ThrowIfNull(items);
        ArgumentNullException.ThrowIfNull(options);
        if (options.K < 1) throw new BupoException($"k must be >= 1, got {options.K}");
        if (items.Count == 0) throw new BupoException($"{dataset}: no problems");
        var ks = options.PassKs ?? PassAtK.PowersOfTwoUpTo(options.K);
        foreach (var k in ks)
            if (k < 1 || k > options.K) throw new BupoException($"pass@{k}: k must be in [1, {options.K}] (the samples per problem)");
        foreach (var item in items)
            if (item.Answer == null) throw new BupoException($"{dataset}: problem '{item.Id}' has no reference answer");

        var template = PromptTemplates.Resolve(options.Template, engine);
        var prompts = new int[items.Count][];
        for (int i = 0; i < items.Count; i++) prompts[i] = PromptTemplates.Encode(template, items[i].Problem, engine);

        IReadOnlyList<RolloutResult> rollouts;
        try
        {
            rollouts = (generator ?? engine).Generate(new RolloutRequest(prompts, options.K, options.Sampling, options.Seed), progress, ct);
        }
        catch (BupoException e)
        {
            throw new BupoException($"{dataset}: {e.Message}", e);
        }
        var verifier = options.Verifier ?? new MathAnswerVerifier();
        double[]? rewards = null;
        if (options.Reward != null)
        {
            var batch = new RewardSample[rollouts.Count];
            for (int j = 0; j < rollouts.Count; j++) batch[j] = new RewardSample(items[rollouts[j].PromptIndex], rollouts[j].Text);
            rewards = options.Reward.Score(batch);
        }
        var problems = new ProblemEval[items.Count];
        for (int i = 0; i < items.Count; i++)
        {
            var correct = new bool[options.K];
            var extracted = new string?[options.K];
            var lengths = new int[options.K];
            var finish = new FinishReason[options.K];
            var texts = new string[options.K];
            for (int g = 0; g < options.K; g++)
            {
                int j = i * options.K + g;
                var r = rollouts[j];
                if (rewards != null)
                {
                    correct[g] = rewards[j] > 0.5;
                }
                else
                {
                    var v = verifier.Verify(r.Text, items[i].Answer);
                    correct[g] = v.Correct;
                    extracted[g] = v.Extracted;
                }
                lengths[g] = r.ResponseTokens.Length;
                finish[g] = r.Finish;
                texts[g] = r.Text;
            }
            problems[i] = new ProblemEval(items[i].Id, items[i].Answer!, correct, extracted, lengths, finish, texts);
        }
        var score = DatasetScore.Aggregate(dataset, problems.Select(p => p.Outcome).ToList(), ks);
        return new EvalResult(dataset, template, score, problems, (generator ?? engine).LastStats);
    }

    /// <summary>Loads <paramref name="datasetNameOrPath"/> with <see cref="PromptDataset.Load"/> and evaluates it.</summary>
    public static EvalResult Run(RolloutEngine engine, string datasetNameOrPath, EvalOptions options, int? limit = null,
        PromptDatasetOptions? data = null, IProgress<int>? progress = null, CancellationToken ct = default, IRolloutGenerator? generator = null)
    {
        var items = PromptDataset.Load(datasetNameOrPath, limit: limit, options: data);
        var name = PromptDataset.KnownNames.ContainsKey(datasetNameOrPath) && !File.Exists(datasetNameOrPath)
            ? datasetNameOrPath.ToLowerInvariant()
            : Path.GetFileNameWithoutExtension(datasetNameOrPath);
        return Run(engine, name, items, options, progress, ct, generator);
    }
}
