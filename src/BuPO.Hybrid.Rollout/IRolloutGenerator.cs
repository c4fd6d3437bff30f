namespace BuPO.Hybrid.Rollout;

/// <summary>What an evaluator needs from a sampler (the llama.cpp <see cref="RolloutEngine"/> or a torch sampler): rollouts for a request, and their throughput.</summary>
public interface IRolloutGenerator
{
    /// <summary>Samples the request's rollouts, prompt-major (prompt i's sample j at i * SamplesPerPrompt + j).</summary>
    IReadOnlyList<RolloutResult> Generate(RolloutRequest request, IProgress<int>? completed = null, CancellationToken ct = default);

    /// <summary>Throughput of the last <see cref="Generate"/>.</summary>
    RolloutStats LastStats { get; }
}
