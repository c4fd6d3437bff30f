using BuPO.Hybrid.Tokenizers;
using BuPO.Hybrid.Rollout;

namespace BuPO.Hybrid.RL.Training;

/// <summary>
/// <see cref="IRolloutSampler"/> on the <see cref="RolloutEngine"/> (llama.cpp, prefill once with fan-out, slot refill).
/// The log-probs handed to the trainer are the engine's behaviour log-probs (Rollout.BehaviorLogProbs): the distribution each token was drawn from
/// (temperature applied), which is log π_sampler of the truncated importance weight.
/// </summary>
public sealed class RolloutEngineSampler : IRolloutSampler
{
    public RolloutEngine Engine { get; }

    public RolloutEngineSampler(RolloutEngine engine) => Engine = engine ?? throw new ArgumentNullException(nameof(engine));

    /// <summary>An engine for <paramref name="ggufPath"/> with the run's engine settings (--parallel, --context-size, --threads, --gpu-layers, --llama-lib-dir).</summary>
    public static RolloutEngineSampler Create(string ggufPath, TrainOptions o) => new(new RolloutEngine(ggufPath, new RolloutEngineOptions
    {
        Parallel = Math.Min(o.Parallel, RolloutEngine.MaxParallel),
        ContextSize = o.ContextSize,
        Threads = o.Threads,
        SamplingThreads = o.Threads,
        GpuLayers = o.GpuLayers,
        LlamaLibDir = o.LlamaLibDir,
    }));

    public ITextTokenizer Tokenizer => Engine.Tokenizer;
    public string ModelPath => Engine.ModelPath;
    public double LastTokensPerSecond => Engine.LastStats.TokensPerSecond;

    public string FormatPrompt(string template, string problem) => PromptTemplates.Format(template, problem, Engine);

    public IReadOnlyList<RolloutResult> Generate(IReadOnlyList<int[]> promptTokens, int samplesPerPrompt, RolloutSampling sampling, ulong seed,
        CancellationToken ct = default) =>
        Engine.Generate(new RolloutRequest(promptTokens, samplesPerPrompt, sampling, seed), null, ct)
            .OrderBy(r => r.PromptIndex).ThenBy(r => r.SampleIndex)
            .ToArray();

    public void ReloadModel(string ggufPath) => Engine.ReloadModel(ggufPath);

    public void SetLora(string? adapterPath) => Engine.SetLora(adapterPath);

    public void Sleep(bool unloadModel) => Engine.Sleep(unloadModel);

    public void Dispose() => Engine.Dispose();
}
