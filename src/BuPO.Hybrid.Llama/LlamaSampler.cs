using System.Numerics.Tensors;
using LLama.Native;

namespace BuPO.Hybrid.Llama;

/// <summary>Settings of a <see cref="LlamaSampler"/>.</summary>
public sealed record LlamaSamplerOptions
{
    /// <summary>Softmax temperature; 0 = greedy (argmax, the other settings are then ignored).</summary>
    public float Temperature { get; init; } = 1f;
    /// <summary>Keep the K most likely tokens; 0 = off.</summary>
    public int TopK { get; init; }
    /// <summary>Nucleus: keep the smallest set whose probability reaches P; 1 = off.</summary>
    public float TopP { get; init; } = 1f;
    /// <summary>Drop tokens whose probability is below MinP times the most likely one's; 0 = off.</summary>
    public float MinP { get; init; }
    /// <summary>Seed of the random draw; null = a random seed.</summary>
    public uint? Seed { get; init; }

    /// <summary>Greedy decoding.</summary>
    public static LlamaSamplerOptions Greedy { get; } = new() { Temperature = 0f };

    /// <summary>True when <see cref="Temperature"/> is 0.</summary>
    public bool IsGreedy => Temperature <= 0f;
}

/// <summary>
/// A sampled token with its log-probability under the model's distribution (<c>RawLogProb</c>: softmax of the raw logits,
/// temperature 1) and under the distribution the sampler actually drew from (<c>BehaviorLogProb</c>) (after top-k / top-p / min-p /
/// temperature as the chain applied them; 0 for greedy, which is a point mass).
/// </summary>
public readonly record struct SampledToken(int Token, float RawLogProb, float BehaviorLogProb);

/// <summary>
/// A llama.cpp sampler chain (LLamaSharp's <see cref="SafeLLamaSamplerChainHandle"/>): top-k, top-p, min-p, temperature, then a seeded
/// draw (<c>dist</c>) — llama.cpp's usual order, so the truncations see the unscaled logits — or greedy. The chain
/// is applied here to a candidate array built from the logits, so the surviving candidates can be read back for
/// the sampling log-probability. Not thread-safe; use one per sequence for reproducible per-sequence streams.
/// </summary>
public sealed unsafe class LlamaSampler : IDisposable
{
    private readonly SafeLLamaSamplerChainHandle _chain;
    private LLamaTokenData[] _candidates = [];
    private float[] _scratch = [];

    /// <summary>The options the chain was built from (with the seed actually used).</summary>
    public LlamaSamplerOptions Options { get; }

    private LlamaSampler(SafeLLamaSamplerChainHandle chain, LlamaSamplerOptions options)
    {
        _chain = chain;
        Options = options;
    }

    /// <summary>Builds the chain.</summary>
    /// <exception cref="BupoException">An option out of range.</exception>
    public static LlamaSampler Create(LlamaSamplerOptions options)
    {
        var (chain, resolved) = BuildChain(options);
        return new LlamaSampler(chain, resolved);
    }

    /// <summary>
    /// Validates the options, fixes a random seed when none is given, and builds llama.cpp's chain (top-k, top-p,
    /// min-p, temperature, seeded dist; or greedy). Shared with <see cref="LlamaNativeSampler"/>.
    /// </summary>
    /// <exception cref="BupoException">An option out of range.</exception>
    internal static (SafeLLamaSamplerChainHandle Chain, LlamaSamplerOptions Resolved) BuildChain(LlamaSamplerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (!float.IsFinite(options.Temperature) || options.Temperature < 0) throw new BupoException($"temperature must be >= 0, got {options.Temperature}");
        if (options.TopK < 0) throw new BupoException($"top-k must be >= 0, got {options.TopK}");
        if (!(options.TopP > 0 && options.TopP <= 1)) throw new BupoException($"top-p must be in (0, 1], got {options.TopP}");
        if (!(options.MinP >= 0 && options.MinP < 1)) throw new BupoException($"min-p must be in [0, 1), got {options.MinP}");
        LlamaBackend.EnsureInitialized();
        options = options with { Seed = options.Seed ?? (uint)Random.Shared.NextInt64(0, uint.MaxValue) };

        var cp = LLamaSamplerChainParams.Default();
        cp.NoPerf = true;
        var chain = SafeLLamaSamplerChainHandle.Create(cp);
        if (chain.IsInvalid) throw new OutOfMemoryException("llama_sampler_chain_init failed");
        try
        {
            if (options.IsGreedy)
            {
                chain.AddGreedySampler();
            }
            else
            {
                if (options.TopK > 0) chain.AddTopK(options.TopK);
                if (options.TopP < 1) chain.AddTopP(options.TopP, 1);
                if (options.MinP > 0) chain.AddMinP(options.MinP, 1);
                if (options.Temperature != 1f) chain.AddTemperature(options.Temperature);
                chain.AddDistributionSampler(options.Seed!.Value);
            }
        }
        catch
        {
            chain.Dispose();
            throw;
        }
        return (chain, options);
    }

    /// <summary>Samples from the logits of batch entry <paramref name="index"/> of the context's last decode.</summary>
    public SampledToken Sample(LlamaContext context, int index) => Sample(context.GetLogits(index));

    /// <summary>Samples from <paramref name="logits"/> (one row, length n_vocab) and advances the chain's state.</summary>
    public SampledToken Sample(ReadOnlySpan<float> logits)
    {
        ObjectDisposedException.ThrowIf(_chain.IsClosed, this);
        int n = logits.Length;
        if (n == 0) throw new ArgumentException("empty logits", nameof(logits));
        if (_candidates.Length < n) { _candidates = new LLamaTokenData[n]; _scratch = new float[n]; }
        for (int i = 0; i < n; i++) _candidates[i] = new LLamaTokenData(i, logits[i], 0);

        int token;
        float samplingLogProb;
        using (LLamaTokenDataArrayNative.Create(new LLamaTokenDataArray(_candidates.AsMemory(0, n)), out var arr))
        {
            arr.Selected = -1;
            _chain.Apply(ref arr);
            if (arr.Selected < 0 || (ulong)arr.Selected >= arr.Size)
                throw new BupoException($"the sampler chain selected no token (selected {arr.Selected} of {arr.Size} candidates)");
            var data = arr.Data;
            token = (int)data[(int)arr.Selected].ID;
            if (Options.IsGreedy)
            {
                samplingLogProb = 0f;
            }
            else
            {
                int m = data.Length;
                var survivors = _scratch.AsSpan(0, m);
                for (int i = 0; i < m; i++) survivors[i] = data[i].Logit;
                samplingLogProb = data[(int)arr.Selected].Logit - LogSumExp(survivors, survivors);
            }
        }
        if ((uint)token >= (uint)n) throw new BupoException($"the sampler chain returned token {token} outside the vocabulary");
        float logProb = logits[token] - LogSumExp(logits, _scratch.AsSpan(0, n));
        _chain.Accept(token);
        return new SampledToken(token, logProb, samplingLogProb);
    }

    /// <summary>log(sum(exp(x))) computed stably; <paramref name="scratch"/> (may alias x) is overwritten.</summary>
    internal static float LogSumExp(ReadOnlySpan<float> x, Span<float> scratch)
    {
        float max = TensorPrimitives.Max(x);
        if (float.IsNegativeInfinity(max)) return max;
        TensorPrimitives.Subtract(x, max, scratch);
        TensorPrimitives.Exp(scratch, scratch);
        return max + MathF.Log(TensorPrimitives.Sum<float>(scratch));
    }

    /// <summary>
    /// log-softmax of <paramref name="logits"/> / <paramref name="temperature"/> into <paramref name="destination"/>
    /// (the model's log-probabilities at that temperature).
    /// </summary>
    public static void LogSoftmax(ReadOnlySpan<float> logits, Span<float> destination, float temperature = 1f)
    {
        if (destination.Length < logits.Length) throw new ArgumentException("destination too short", nameof(destination));
        var dst = destination[..logits.Length];
        if (temperature != 1f) TensorPrimitives.Divide(logits, temperature, dst);
        else logits.CopyTo(dst);
        var tmp = new float[logits.Length];
        float lse = LogSumExp(dst, tmp);
        TensorPrimitives.Subtract(dst, lse, dst);
    }

    /// <summary>Resets the chain's state (not the random generator's seed position for dist in every llama.cpp version).</summary>
    public void Reset() => _chain.Reset();

    /// <summary>Frees the chain.</summary>
    public void Dispose() => _chain.Dispose();
}
