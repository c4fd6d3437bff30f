using LLama.Native;

namespace BuPO.Hybrid.Llama;

/// <summary>
/// llama.cpp's own sampling path, exactly as its tools use it: a chain (top-k, top-p, min-p, temperature, seeded
/// <c>dist</c>; or greedy at temperature 0) driven by <c>llama_sampler_sample</c>, which reads the logits row from the
/// context. No log-probabilities are recorded: this is what a plain llama.cpp decode loop pays for sampling, the
/// reference benchmarks compare the rollout engine's managed sampler against. Not thread-safe; one per sequence.
/// </summary>
public sealed class LlamaNativeSampler : IDisposable
{
    private readonly SafeLLamaSamplerChainHandle _chain;

    /// <summary>Builds the chain: llama.cpp's usual order, so the truncations see the unscaled logits.</summary>
    /// <param name="temperature">Softmax temperature; 0 = greedy (the other settings are then unused).</param>
    /// <param name="seed">Seed of the draw.</param>
    /// <param name="topK">Keep the K most likely tokens; 0 = off.</param>
    /// <param name="topP">Nucleus threshold; 1 = off.</param>
    /// <param name="minP">Drop tokens below minP times the most likely one's probability; 0 = off.</param>
    /// <exception cref="BupoException">A setting out of range.</exception>
    public LlamaNativeSampler(float temperature, uint seed, int topK = 0, float topP = 1f, float minP = 0f)
    {
        if (!float.IsFinite(temperature) || temperature < 0) throw new BupoException($"temperature must be >= 0, got {temperature}");
        if (topK < 0) throw new BupoException($"top-k must be >= 0, got {topK}");
        if (!(topP > 0 && topP <= 1)) throw new BupoException($"top-p must be in (0, 1], got {topP}");
        if (!(minP >= 0 && minP < 1)) throw new BupoException($"min-p must be in [0, 1), got {minP}");
        LlamaBackend.EnsureInitialized();
        var cp = LLamaSamplerChainParams.Default();
        cp.NoPerf = true;
        _chain = SafeLLamaSamplerChainHandle.Create(cp);
        if (_chain.IsInvalid) throw new InvalidOperationException("llama_sampler_chain_init failed (out of memory)");
        try
        {
            if (temperature == 0f)
            {
                _chain.AddGreedySampler();
                return;
            }
            if (topK > 0) _chain.AddTopK(topK);
            if (topP < 1) _chain.AddTopP(topP, 1);
            if (minP > 0) _chain.AddMinP(minP, 1);
            if (temperature != 1f) _chain.AddTemperature(temperature);
            _chain.AddDistributionSampler(seed);
        }
        catch
        {
            _chain.Dispose();
            throw;
        }
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
