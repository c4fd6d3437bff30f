namespace BuPO.Hybrid.Rollout;

/// <summary>How each rollout is sampled. The truncations run in llama.cpp's usual order on the raw logits
/// (top-k, then top-p, then min-p), then the temperature scales the survivors and one token is drawn.</summary>
public sealed record RolloutSampling
{
    /// <summary>Softmax temperature; 0 = greedy (argmax; the sampling log-prob is then 0).</summary>
    public double Temperature { get; init; } = 1.0;
    /// <summary>Nucleus: keep the smallest set of most likely tokens whose probability (at temperature 1) reaches P; 1 = off.</summary>
    public double TopP { get; init; } = 1.0;
    /// <summary>Keep the K most likely tokens; 0 = off.</summary>
    public int TopK { get; init; }
    /// <summary>Drop tokens whose probability is below MinP times the most likely one's; 0 = off.</summary>
    public double MinP { get; init; }
    /// <summary>Most tokens generated per rollout.</summary>
    public int MaxTokens { get; init; } = 256;
    /// <summary>A rollout stops once its generated text contains one of these (checked on the detokenized tail after each token).</summary>
    public IReadOnlyList<string> StopStrings { get; init; } = [];
    /// <summary>Keep generating past end-of-generation tokens (benchmarks: every rollout then runs to <see cref="MaxTokens"/>).</summary>
    public bool IgnoreEndOfSequence { get; init; }

    /// <summary>True when no truncation is active (the full distribution at <see cref="Temperature"/> is sampled).</summary>
    public bool IsUntruncated => TopK == 0 && TopP >= 1.0 && MinP <= 0.0;

    /// <summary>Throws <see cref="BupoException"/> for a setting out of range.</summary>
    public void Validate()
    {
        if (!double.IsFinite(Temperature) || Temperature < 0) throw new BupoException($"temperature must be >= 0, got {Temperature}");
        if (TopK < 0) throw new BupoException($"top-k must be >= 0, got {TopK}");
        if (!(TopP > 0 && TopP <= 1)) throw new BupoException($"top-p must be in (0, 1], got {TopP}");
        if (!(MinP >= 0 && MinP < 1)) throw new BupoException($"min-p must be in [0, 1), got {MinP}");
        if (MaxTokens < 1) throw new BupoException($"max tokens must be >= 1, got {MaxTokens}");
        if (StopStrings is null) throw new BupoException("stop strings must not be null (use an empty list)");
        for (int i = 0; i < StopStrings.Count; i++)
            if (string.IsNullOrEmpty(StopStrings[i])) throw new BupoException($"stop string {i} is empty");
    }
}

/// <summary>Settings of a <see cref="RolloutEngine"/>.</summary>
public sealed record RolloutEngineOptions
{
    /// <summary>Most sequences decoding together in one batch (slots; at most 256, llama.cpp's sequence limit).</summary>
    public int Parallel { get; init; } = 64;
    /// <summary>KV cache cells in all (n_ctx); 0 = derive from each request: slots x (longest prompt + max tokens).</summary>
    public int ContextSize { get; init; }
    /// <summary>CPU threads for decoding; 0 = all processors.</summary>
    public int Threads { get; init; }
    /// <summary>Layers offloaded to the GPU: 0 = none, -1 = all (needs a GPU build of llama.cpp).</summary>
    public int GpuLayers { get; init; }
    /// <summary>Folder of the llama.cpp libraries; null = BUPO_LLAMA_LIB_DIR, then the bundled build.</summary>
    public string? LlamaLibDir { get; init; }
    /// <summary>
    /// KV cache layout. True: one buffer shared by all sequences (prompt fan-out shares cells, but every token's
    /// attention spans the whole cache). False: one stream per slot (fan-out copies the prompt's stream; attention
    /// spans only the sequence's own cells). Null = false, the faster choice measured for rollouts whose responses
    /// are longer than their prompts.
    /// </summary>
    public bool? UnifiedKvCache { get; init; }
    /// <summary>
    /// Element type of the K and V caches: null = llama.cpp's default (F16). F32 (with flash attention off) keeps
    /// attention in float32, so a sequence's logits depend on the batch it was decoded in only in their last bits
    /// (with F16 caches, rounding to F16 turns batch-order differences into ~1e-3 differences of the log-probs).
    /// </summary>
    public BuPO.Hybrid.Gguf.GgmlType? KvCacheType { get; init; }
    /// <summary>Threads sampling the rows of one decode step in parallel; 0 = all processors, 1 = sequential.</summary>
    public int SamplingThreads { get; init; }
}

/// <summary>A batch of work: every prompt sampled <see cref="SamplesPerPrompt"/> times.</summary>
/// <param name="PromptTokens">The prompts as token ids (with BOS where the model wants it).</param>
/// <param name="SamplesPerPrompt">G: rollouts per prompt (they share the prompt's prefilled KV cells).</param>
/// <param name="Sampling">Sampling settings.</param>
/// <param name="Seed">Base seed; rollout (p, g) draws from a stream derived from (Seed, p, g).</param>
public sealed record RolloutRequest(IReadOnlyList<int[]> PromptTokens, int SamplesPerPrompt, RolloutSampling Sampling, ulong Seed);

/// <summary>Why a rollout stopped.</summary>
public enum FinishReason
{
    /// <summary>It sampled an end-of-generation token (kept as its last response token).</summary>
    EndOfSequence,
    /// <summary>It reached <see cref="RolloutSampling.MaxTokens"/>.</summary>
    MaxTokens,
    /// <summary>Its text came to contain a stop string.</summary>
    StopString,
}

/// <summary>One sampled response.</summary>
/// <param name="PromptIndex">Index of the prompt in the request.</param>
/// <param name="SampleIndex">Index of the sample among the prompt's G.</param>
/// <param name="PromptTokens">The prompt (one array shared by the prompt's G rollouts: do not modify).</param>
/// <param name="ResponseTokens">The generated tokens, with the final end-of-generation token when it stopped on one.</param>
/// <param name="RawLogProbs">Per response token: log-softmax of the full raw logits (temperature 1, no truncation) at that token: the model's own distribution.</param>
/// <param name="BehaviorLogProbs">Per response token: its log-probability under the distribution it was actually drawn from (after truncation and temperature; 0 when greedy): the behaviour policy of importance weights. Equal to <paramref name="RawLogProbs"/> only at temperature 1 without truncation.</param>
/// <param name="Text">The pieces of the response tokens as UTF-8 text (a final end-of-generation token excluded; up to the end of the token that completed a stop string).</param>
/// <param name="Finish">Why it stopped.</param>
public sealed record RolloutResult(int PromptIndex, int SampleIndex, int[] PromptTokens, int[] ResponseTokens, float[] RawLogProbs,
    float[] BehaviorLogProbs, string Text, FinishReason Finish);

/// <summary>Throughput of the last <see cref="RolloutEngine.Generate"/>.</summary>
/// <param name="GeneratedTokens">Response tokens generated.</param>
/// <param name="Seconds">Wall time of prefill, decoding and sampling (context creation excluded).</param>
public sealed record RolloutStats(long GeneratedTokens, double Seconds)
{
    /// <summary>Generated tokens per second.</summary>
    public double TokensPerSecond => Seconds > 0 ? GeneratedTokens / Seconds : 0;
    /// <summary>Prompt tokens decoded (each prompt once).</summary>
    public long PromptTokens { get; init; }
    /// <summary>llama_decode calls.</summary>
    public int DecodeCalls { get; init; }
    /// <summary>Seconds inside llama_decode.</summary>
    public double DecodeSeconds { get; init; }
    /// <summary>Seconds sampling (log-softmax, truncation, draw).</summary>
    public double SampleSeconds { get; init; }
    /// <summary>Seconds before the first decode: loading the model again after <see cref="RolloutEngine.Sleep"/> unloaded it, and
    /// building the context when there was none (after a sleep or a weight sync) or it was too small. Not part of <see cref="Seconds"/>.</summary>
    public double SetupSeconds { get; init; }
}
