using BuPO.Hybrid.Tokenizers;
using BuPO.Hybrid.Rollout;

namespace BuPO.Hybrid.RL.Training;

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
    /// at i * samplesPerPrompt + j), each with its raw and behaviour log-probs (<see cref="RolloutResult"/>; the trainer's TIS
    /// divides by the behaviour ones). Deterministic for the same model file, prompts, settings and seed.
    /// </summary>
    IReadOnlyList<RolloutResult> Generate(IReadOnlyList<int[]> promptTokens, int samplesPerPrompt, RolloutSampling sampling, ulong seed,
        CancellationToken ct = default);

    /// <summary>Generated tokens per second of the last <see cref="Generate"/>.</summary>
    double LastTokensPerSecond { get; }

    /// <summary>Loads another GGUF of the same model (new weights) in place of the current one (and drops any LoRA adapter).</summary>
    void ReloadModel(string ggufPath);

    /// <summary>Applies a LoRA adapter GGUF (scale 1) in place of the current one; null removes it.</summary>
    void SetLora(string? adapterPath);

    /// <summary>
    /// Frees what the sampler holds between rollouts (its KV cache; with <paramref name="unloadModel"/> its model too)
    /// while the trainer updates; the next call that needs them brings them back. Default: nothing to free.
    /// </summary>
    void Sleep(bool unloadModel) { }
}
