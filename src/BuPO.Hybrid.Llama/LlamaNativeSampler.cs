using BuPO.Hybrid.Llama.Native;

namespace BuPO.Hybrid.Llama;

/// <summary>
/// llama.cpp's own sampling path, exactly as its tools use it: a chain (top-k, top-p, min-p, temperature, seeded
/// <c>dist</c>; or greedy) driven by <c>llama_sampler_sample</c>, which reads the logits row from the context.
/// No log-probabilities are recorded: this is the reference a plain llama.cpp decode loop pays for sampling
/// (benchmarks compare against it). Use <see cref="LlamaSampler"/> for sampling with log-probs.
/// </summary>
public sealed class LlamaNativeSampler : IDisposable
{
    private readonly SafeLlamaSamplerHandle _chain;

    /// <summary>The options the chain was built from (with the seed actually used).</summary>
    public LlamaSamplerOptions Options { get; }

    /// <summary>Builds the chain.</summary>
    /// <exception cref="BupoException">An option out of range.</exception>
    public LlamaNativeSampler(LlamaSamplerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (!float.IsFinite(options.Temperature) || options.Temperature < 0) throw new BupoException($"temperature must be >= 0, got {options.Temperature}");
        if (options.TopK < 0) throw new BupoException($"top-k must be >= 0, got {options.TopK}");
        if (!(options.TopP > 0 && options.TopP <= 1)) throw new BupoException($"top-p must be in (0, 1], got {options.TopP}");
        if (!(options.MinP >= 0 && options.MinP < 1)) throw new BupoException($"min-p must be in [0, 1), got {options.MinP}");
        LlamaBackend.EnsureInitialized();
        Options = options with { Seed = options.Seed ?? (uint)Random.Shared.NextInt64(0, uint.MaxValue) };
        var cp = LlamaNative.llama_sampler_chain_default_params();
        cp.no_perf = 1;
        _chain = new SafeLlamaSamplerHandle(LlamaNative.llama_sampler_chain_init(cp));
        if (_chain.IsInvalid) throw new OutOfMemoryException("llama_sampler_chain_init failed");
        try
        {
            if (Options.IsGreedy)
            {
                Add(LlamaNative.llama_sampler_init_greedy());
            }
            else
            {
                if (Options.TopK > 0) Add(LlamaNative.llama_sampler_init_top_k(Options.TopK));
                if (Options.TopP < 1) Add(LlamaNative.llama_sampler_init_top_p(Options.TopP, 1));
                if (Options.MinP > 0) Add(LlamaNative.llama_sampler_init_min_p(Options.MinP, 1));
                if (Options.Temperature != 1f) Add(LlamaNative.llama_sampler_init_temp(Options.Temperature));
                Add(LlamaNative.llama_sampler_init_dist(Options.Seed!.Value));
            }
        }
        catch
        {
            _chain.Dispose();
            throw;
        }

        void Add(nint sampler)
        {
            if (sampler == 0) throw new OutOfMemoryException("llama_sampler_init_* failed");
            LlamaNative.llama_sampler_chain_add(_chain, sampler);
        }
    }

    /// <summary>Samples (and accepts) a token from the logits of batch entry <paramref name="index"/> of the context's last decode.</summary>
    public int Sample(LlamaContext context, int index)
    {
        ArgumentNullException.ThrowIfNull(context);
        ObjectDisposedException.ThrowIf(_chain.IsClosed, this);
        _ = context.GetLogits(index); // throws for an entry without logits (llama.cpp would abort the process)
        return LlamaNative.llama_sampler_sample(_chain, context.Handle, index);
    }

    /// <summary>Frees the chain.</summary>
    public void Dispose() => _chain.Dispose();
}
