using System.Diagnostics;
using System.Runtime.CompilerServices;
using BuPO.Hybrid.Llama;
using BuPO.Hybrid.Rollout;

namespace BuPO.Hybrid.Bench.Rollouts;

/// <summary>Settings of <see cref="RolloutBenchmark"/>.</summary>
public sealed record RolloutBenchmarkOptions
{
    /// <summary>Batch sizes (sequences decoding together) to measure.</summary>
    public IReadOnlyList<int> BatchSizes { get; init; } = [1, 16, 64, 256];
    /// <summary>Tokens per prompt (random ids, no control or end-of-generation tokens).</summary>
    public int PromptTokens { get; init; } = 128;
    /// <summary>Tokens generated per sequence (end of generation ignored: every sequence runs to this length).</summary>
    public int GenTokens { get; init; } = 256;
    /// <summary>Measurements per engine and batch size, alternating raw/engine; the fastest of each is reported (noise on a shared machine only adds time).</summary>
    public int Repeats { get; init; } = 1;
    /// <summary>Decode threads; 0 = all processors.</summary>
    public int Threads { get; init; }
    /// <summary>Sampling threads of the engine; 0 = all processors.</summary>
    public int SamplingThreads { get; init; }
    /// <summary>GPU layers (-1 = all).</summary>
    public int GpuLayers { get; init; }
    /// <summary>KV layout for both loops; null = the engine's default.</summary>
    public bool? UnifiedKvCache { get; init; }
    /// <summary>Seed of the prompts and the draws.</summary>
    public ulong Seed { get; init; } = 1;
}

/// <summary>One batch size: raw llama.cpp loop vs <see cref="RolloutEngine"/>.</summary>
/// <param name="Batch">Sequences decoding together.</param>
/// <param name="RawTokensPerSecond">Generated tokens/s of the raw loop (its fastest run).</param>
/// <param name="EngineTokensPerSecond">Generated tokens/s of the engine (its fastest run).</param>
/// <param name="GeneratedTokens">Tokens generated per run (batch x gen tokens).</param>
/// <param name="RawSeconds">Seconds of the raw runs.</param>
/// <param name="EngineSeconds">Seconds of the engine runs.</param>
/// <param name="RawDecodeSeconds">Seconds inside llama_decode of the raw loop's fastest run.</param>
/// <param name="EngineDecodeSeconds">Seconds inside llama_decode of the engine's fastest run.</param>
/// <param name="EngineSampleSeconds">Seconds sampling (log-probs, draw) of the engine's fastest run.</param>
public sealed record RolloutBenchmarkRow(int Batch, double RawTokensPerSecond, double EngineTokensPerSecond, long GeneratedTokens,
    double[] RawSeconds, double[] EngineSeconds, double RawDecodeSeconds, double EngineDecodeSeconds, double EngineSampleSeconds)
{
    /// <summary>Engine / raw throughput.</summary>
    public double Ratio => RawTokensPerSecond > 0 ? EngineTokensPerSecond / RawTokensPerSecond : 0;
}

/// <summary>
/// Measures generated tokens/s of (a) a raw in-process llama.cpp decode loop — prompts prefilled in chunks of the
/// batch size, then each step one <c>llama_decode</c> with one token per sequence and one <c>llama_sampler_sample</c>
/// (llama.cpp's dist sampler) per sequence, nothing else — and (b) <see cref="RolloutEngine"/> with its full
/// bookkeeping (raw and sampling log-probs, finish checks, slot refill, text), on the same model, prompts, context
/// layout and thread count, alternating between the two. Both time prefill + generation; context creation is excluded.
/// </summary>
public static class RolloutBenchmark
{
    /// <summary>Runs every batch size; <paramref name="onRow"/> sees each row as it is measured.</summary>
    public static IReadOnlyList<RolloutBenchmarkRow> Run(string ggufPath, RolloutBenchmarkOptions options, Action<RolloutBenchmarkRow>? onRow = null,
        Action<string>? status = null, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.BatchSizes.Count == 0) throw new BupoException("no batch sizes");
        foreach (var b in options.BatchSizes)
            if (b is < 1 or > RolloutEngine.MaxParallel) throw new BupoException($"batch size must be in [1, {RolloutEngine.MaxParallel}], got {b}");
        if (options.PromptTokens < 1) throw new BupoException($"prompt tokens must be >= 1, got {options.PromptTokens}");
        if (options.GenTokens < 1) throw new BupoException($"gen tokens must be >= 1, got {options.GenTokens}");
        if (options.Repeats < 1) throw new BupoException($"repeats must be >= 1, got {options.Repeats}");

        using var engine = new RolloutEngine(ggufPath, new RolloutEngineOptions
        {
            Parallel = options.BatchSizes.Max(), Threads = options.Threads, GpuLayers = options.GpuLayers,
            UnifiedKvCache = options.UnifiedKvCache, SamplingThreads = options.SamplingThreads,
        });
        bool unified = options.UnifiedKvCache ?? false;
        var prompts = RandomPrompts(engine.Model, options.BatchSizes.Max(), options.PromptTokens, options.Seed);
        var sampling = new RolloutSampling { MaxTokens = options.GenTokens, IgnoreEndOfSequence = true };

        // Warm-up: page in the weights, and let the JIT reach its optimized tier for the sampler (the raw loop is native code).
        status?.Invoke("warm-up");
        engine.Generate(new RolloutRequest(prompts.Take(2).ToArray(), 1, sampling with { MaxTokens = Math.Min(64, options.GenTokens) }, options.Seed), ct: ct);

        var rows = new List<RolloutBenchmarkRow>();
        foreach (var b in options.BatchSizes)
        {
            var batchPrompts = prompts.Take(b).ToArray();
            var raw = new List<(double Seconds, double Decode)>();
            var eng = new List<(double Seconds, RolloutStats Stats)>();
            // One engine per batch size, so its context is sized for exactly b slots like the raw loop's; both warmed up.
            using var sized = new RolloutEngine(ggufPath, engine.Options with { Parallel = b });
            sized.Generate(new RolloutRequest(batchPrompts, 1, sampling with { MaxTokens = 2 }, 0), ct: ct);
            using var rawCtx = RawContext(sized.Model, batchPrompts, options.GenTokens, options.Threads, unified);
            RawLoop(rawCtx, batchPrompts, 2, options.Seed);
            for (int rep = 0; rep < options.Repeats; rep++)
            {
                ct.ThrowIfCancellationRequested();
                bool rawFirst = rep % 2 == 0;
                for (int k = 0; k < 2; k++)
                {
                    if ((k == 0) == rawFirst)
                    {
                        status?.Invoke($"batch {b}: raw llama.cpp loop ({rep + 1}/{options.Repeats})");
                        raw.Add(RawLoop(rawCtx, batchPrompts, options.GenTokens, options.Seed));
                    }
                    else
                    {
                        status?.Invoke($"batch {b}: rollout engine ({rep + 1}/{options.Repeats})");
                        var result = sized.Generate(new RolloutRequest(batchPrompts, 1, sampling, options.Seed), ct: ct);
                        long tokens = result.Sum(r => (long)r.ResponseTokens.Length);
                        if (tokens != (long)b * options.GenTokens) throw new InvalidOperationException($"engine generated {tokens} tokens, expected {(long)b * options.GenTokens}");
                        eng.Add((sized.LastStats.Seconds, sized.LastStats));
                    }
                }
            }
            long generated = (long)b * options.GenTokens;
            var engBest = eng.MinBy(e => e.Seconds);
            var rawBest = raw.MinBy(r => r.Seconds);
            var row = new RolloutBenchmarkRow(b, generated / rawBest.Seconds, generated / engBest.Seconds, generated,
                raw.Select(r => r.Seconds).ToArray(), eng.Select(e => e.Seconds).ToArray(), rawBest.Decode, engBest.Stats.DecodeSeconds,
                engBest.Stats.SampleSeconds);
            rows.Add(row);
            onRow?.Invoke(row);
        }
        return rows;
    }

    /// <summary>Random prompts of ordinary tokens (no control, byte-less specials or end-of-generation ids), BOS first when the model adds one.</summary>
    public static int[][] RandomPrompts(LlamaModel model, int count, int length, ulong seed)
    {
        var vocab = model.Vocab;
        var ordinary = Enumerable.Range(0, vocab.VocabSize).Where(t => !vocab.IsControl(t) && !vocab.IsEndOfGeneration(t)).ToArray();
        if (ordinary.Length == 0) throw new BupoException($"{model.Path}: the vocabulary has no ordinary tokens");
        var rng = new RolloutRng(seed);
        var prompts = new int[count][];
        for (int i = 0; i < count; i++)
        {
            var p = new int[length];
            for (int j = 0; j < length; j++) p[j] = ordinary[(int)(rng.Next() % (ulong)ordinary.Length)];
            if (vocab.AddsBos && vocab.BosId >= 0) p[0] = vocab.BosId;
            prompts[i] = p;
        }
        return prompts;
    }

    /// <summary>A context laid out as the engine lays out its own for <paramref name="prompts"/>: one slot per prompt.</summary>
    public static LlamaContext RawContext(LlamaModel model, IReadOnlyList<int[]> prompts, int genTokens, int threads, bool unified)
    {
        int b = prompts.Count;
        long perSeq = (prompts.Max(p => p.Length) + genTokens + 255L) / 256 * 256;
        return LlamaContext.Create(model, new LlamaContextOptions
        {
            ContextSize = (int)(perSeq * b), BatchSize = Math.Max(512, b), UBatchSize = 512, MaxSequences = b, Threads = threads,
            UnifiedKvCache = unified,
        });
    }

    /// <summary>
    /// The raw loop on <paramref name="ctx"/> (KV cleared first): prompts prefilled in batch-size chunks, then per step one
    /// decode of one token per sequence and one llama_sampler_sample (dist, temperature 1) per sequence. Returns the
    /// seconds in all and the seconds inside llama_decode.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // as the engine's loop: no unoptimized JIT tier
    public static (double Seconds, double DecodeSeconds) RawLoop(LlamaContext ctx, IReadOnlyList<int[]> prompts, int genTokens, ulong seed)
    {
        int b = prompts.Count;
        if (b > ctx.MaxSequences) throw new BupoException($"{b} prompts but the context holds {ctx.MaxSequences} sequences");
        ctx.Clear();
        using var batch = new LlamaBatch(ctx.BatchSize);
        var samplers = new LlamaNativeSampler[b];
        try
        {
            for (int i = 0; i < b; i++) samplers[i] = new LlamaNativeSampler(temperature: 1f, seed: unchecked((uint)seed + (uint)i));
            var last = new int[b];
            var index = new int[b];
            var pending = new List<int>(b);
            var sw = Stopwatch.StartNew();
            long decodeTicks = 0;
            void Decode()
            {
                long t0 = Stopwatch.GetTimestamp();
                ctx.Decode(batch);
                decodeTicks += Stopwatch.GetTimestamp() - t0;
            }

            // prefill, chunked; each prompt's last token asks for logits and is sampled after its chunk decodes
            batch.Clear();
            for (int i = 0; i < b; i++)
            {
                var p = prompts[i];
                for (int j = 0; j < p.Length; j++)
                {
                    if (batch.Count == batch.Capacity)
                    {
                        Decode();
                        foreach (var s in pending) last[s] = samplers[s].Sample(ctx, index[s]);
                        pending.Clear();
                        batch.Clear();
                    }
                    bool isLast = j == p.Length - 1;
                    int at = batch.Add(p[j], j, i, isLast);
                    if (isLast) { index[i] = at; pending.Add(i); }
                }
            }
            Decode();
            foreach (var s in pending) last[s] = samplers[s].Sample(ctx, index[s]);

            // generation: one token per sequence per decode
            for (int step = 1; step < genTokens; step++)
            {
                batch.Clear();
                for (int i = 0; i < b; i++) index[i] = batch.Add(last[i], prompts[i].Length + step - 1, i, true);
                Decode();
                for (int i = 0; i < b; i++) last[i] = samplers[i].Sample(ctx, index[i]);
            }
            double seconds = sw.Elapsed.TotalSeconds;
            ctx.Clear();
            return (seconds, decodeTicks / (double)Stopwatch.Frequency);
        }
        finally
        {
            foreach (var s in samplers) s?.Dispose();
        }
    }
}
