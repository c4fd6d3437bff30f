using BuPO.Hybrid.Tokenizers;

namespace BuPO.Hybrid.RL.Training;

/// <summary>Sampling settings of one rollout batch.</summary>
public sealed record SamplerSettings(double Temperature, double TopP, int TopK, double MinP, int MaxTokens, IReadOnlyList<string> StopStrings)
{
    public static SamplerSettings From(TrainOptions o) => new(o.Temperature, o.TopP, o.TopK, o.MinP, o.MaxResponseTokens, o.Stop);
}

/// <summary>One sampled response.</summary>
/// <param name="PromptIndex">Index of its prompt in the request.</param>
/// <param name="Tokens">Generated token ids (an end-of-generation token included when it stopped on one: the trainer trains on it).</param>
/// <param name="BehaviorLogProbs">Per token: log-probability under the distribution the sampler actually drew from (temperature and truncation applied): log π_behaviour of the TIS weight.</param>
/// <param name="Text">The response text (without a final end-of-generation token).</param>
/// <param name="HitMaxTokens">Whether it stopped because it reached the token limit.</param>
public sealed record SampledResponse(int PromptIndex, int[] Tokens, float[] BehaviorLogProbs, string Text, bool HitMaxTokens);

/// <summary>
/// What the trainer needs from the rollout side: a tokenizer, batched sampling with log-probs, and reloading new
/// weights. <see cref="RolloutEngineSampler"/> implements it on llama.cpp; tests use synthetic samplers.
/// </summary>
public interface IRolloutSampler : IDisposable
{
    /// <summary>The tokenizer of the sampled model (the trainer uses the same ids).</summary>
    ITextTokenizer Tokenizer { get; }

    /// <summary>The GGUF currently loaded.</summary>
    string ModelPath { get; }

    /// <summary>The prompt text for <paramref name="problem"/> under a <see cref="PromptTemplates"/> name ("auto" resolved for this model).</summary>
    string FormatPrompt(string template, string problem);

    /// <summary>
    /// Samples <paramref name="samplesPerPrompt"/> responses to each prompt, returned prompt-major (prompt i's sample j
    /// at i * samplesPerPrompt + j). Deterministic for the same model file, prompts, settings and seed.
    /// </summary>
    IReadOnlyList<SampledResponse> Generate(IReadOnlyList<int[]> promptTokens, int samplesPerPrompt, SamplerSettings sampling, ulong seed,
        CancellationToken ct = default);

    /// <summary>Generated tokens per second of the last <see cref="Generate"/>.</summary>
    double LastTokensPerSecond { get; }

    /// <summary>Loads another GGUF of the same model (new weights) in place of the current one (and drops any LoRA adapter).</summary>
    void ReloadModel(string ggufPath);

    /// <summary>Applies a LoRA adapter GGUF (scale 1) in place of the current one; null removes it.</summary>
    void SetLora(string? adapterPath);
}
