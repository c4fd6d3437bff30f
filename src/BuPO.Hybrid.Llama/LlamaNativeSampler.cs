using LLama.Native;

namespace BuPO.Hybrid.Llama;

/// <summary>
/// llama.cpp's own sampling path, exactly as its tools use it: a chain (top-k, top-p, min-p, temperature, seeded
/// <c>dist</c>; or greedy) driven by <c>llama_sampler_sample</c>, which reads the logits row from the context.
/// No log-probabilities are recorded: this is the reference a plain llama.cpp decode loop pays for sampling
/// (benchmarks compare against it). Use <see cref="LlamaSampler"/> for sampling with log-probs.
/// </summary>
public sealed class LlamaNativeSampler : IDisposable
{
    private readonly SafeLLamaSamplerChainHandle _chain;

    /// <summary>The options the chain was built from (with the seed actually used).</summary>
    public LlamaSamplerOptions Options { get; }

    /// <summary>Builds the chain.</summary>
    /// <exception cref="BupoException">An option out of range.</exception>
    public LlamaNativeSampler(LlamaSamplerOptions options)
    {
        (_chain, var resolved) = LlamaSampler.BuildChain(options);
        Options = resolved;
    }

    /// <summary>Samples (and accepts) a token from the logits of batch entry <paramref name="index"/> of the context's last decode.</summary>
    public int Sample(LlamaContext context, int index)
    {
        ArgumentNullException.ThrowIfNull(context);
        ObjectDisposedException.ThrowIf(_chain.IsClosed, this);
        _ = context.GetLogits(index); // throws for an entry without logits (llama.cpp would abort the process)
        return (int)_chain.Sample(context.Handle, index);
    }

    /// <summary>Frees the chain.</summary>
    public void Dispose() => _chain.Dispose();
}
