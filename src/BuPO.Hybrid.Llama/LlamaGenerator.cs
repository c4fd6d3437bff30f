namespace BuPO.Hybrid.Llama;

/// <summary>Settings of <see cref="LlamaGenerator.Generate(IReadOnlyList{int[]}, GenerationOptions)"/>.</summary>
public sealed record GenerationOptions
{
    /// <summary>Most tokens generated per sequence.</summary>
    public int MaxTokens { get; init; } = 64;
    /// <summary>Sampling settings; sequence i draws with seed (Seed ?? the context's seed) + i.</summary>
    public LlamaSamplerOptions Sampling { get; init; } = new();
    /// <summary>Stop a sequence at an end-of-generation token (EOS, EOT...); the token is kept in <see cref="GeneratedSequence.Tokens"/>.</summary>
    public bool StopAtEndOfGeneration { get; init; } = true;
}

/// <summary>Why a sequence stopped.</summary>
public enum GenerationStopReason
{
    /// <summary>It sampled an end-of-generation token.</summary>
    EndOfGeneration,
    /// <summary>It reached <see cref="GenerationOptions.MaxTokens"/>.</summary>
    MaxTokens,
}

/// <summary>One generated sequence.</summary>
/// <param name="PromptTokens">The prompt as decoded.</param>
/// <param name="Tokens">Generated token ids (with the final end-of-generation token when it stopped on one).</param>
/// <param name="RawLogProbs">Per generated token: log-probability under the model (raw logits, temperature 1).</param>
/// <param name="BehaviorLogProbs">Per generated token: log-probability under the distribution the sampler drew from.</param>
/// <param name="Text">The pieces of <paramref name="Tokens"/> (without a final end-of-generation token) as UTF-8 text: the continuation of the prompt.</param>
/// <param name="StopReason">Why it stopped.</param>
public sealed record GeneratedSequence(int[] PromptTokens, int[] Tokens, float[] RawLogProbs, float[] BehaviorLogProbs, string Text,
    GenerationStopReason StopReason);

/// <summary>
/// Simple batched generation: P prompts decoded together as sequences 0..P-1 (the prompt tokens in chunks of
/// the context's batch size), then one token per live sequence per decode until each stops. The KV cache is
/// cleared first. The building blocks (batch, decode, per-sequence samplers, memory ops) are the ones a
/// rollout engine with slot refill and prompt fan-out composes differently.
/// </summary>
public sealed class LlamaGenerator(LlamaContext context)
{
    /// <summary>The context generation runs in.</summary>
    public LlamaContext Context { get; } = context ?? throw new ArgumentNullException(nameof(context));

    /// <summary>Tokenizes each prompt (with BOS as the model asks, special tokens parsed) and generates.</summary>
    public IReadOnlyList<GeneratedSequence> Generate(IReadOnlyList<string> prompts, GenerationOptions options) =>
        Generate(prompts.Select(p => Context.Model.Vocab.Encode(p, addSpecial: true, parseSpecial: true)).ToArray(), options);

    /// <summary>Generates a continuation of every prompt (token ids), all in one batch.</summary>
    /// <exception cref="BupoException">Too many prompts for the context, an empty prompt, or not enough KV cache.</exception>
    public IReadOnlyList<GeneratedSequence> Generate(IReadOnlyList<int[]> prompts, GenerationOptions options)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        ArgumentNullException.ThrowIfNull(options);
        var ctx = Context;
        int p = prompts.Count;
        if (p == 0) return [];
        if (options.MaxTokens < 1) throw new BupoException($"max tokens must be >= 1, got {options.MaxTokens}");
        if (p > ctx.MaxSequences) throw new BupoException($"{p} prompts but the context holds at most {ctx.MaxSequences} sequences");
        if (p > ctx.BatchSize) throw new BupoException($"{p} prompts but the context's batch size is {ctx.BatchSize}");
        for (int i = 0; i < p; i++)
        {
            if (prompts[i] is null || prompts[i].Length == 0) throw new BupoException($"prompt {i} is empty (it needs at least one token, e.g. BOS)");
            foreach (var t in prompts[i])
                if ((uint)t >= (uint)ctx.VocabSize) throw new BupoException($"prompt {i} holds token {t}, outside the vocabulary [0, {ctx.VocabSize})");
        }
        long need = ctx.Options.UnifiedKvCache ? prompts.Sum(x => (long)x.Length + options.MaxTokens) : prompts.Max(x => x.Length) + options.MaxTokens;
        long have = ctx.Options.UnifiedKvCache ? ctx.ContextSize : ctx.ContextSize / ctx.MaxSequences;
        if (need > have)
            throw new BupoException($"generation needs {need} KV cells{(ctx.Options.UnifiedKvCache ? "" : " per sequence")} but the context has {have}: use a larger context size or fewer/shorter prompts");

        var vocab = ctx.Model.Vocab;
        var seed = options.Sampling.Seed ?? ctx.Options.Seed;
        var samplers = new LlamaSampler[p];
        var tokens = new List<int>[p];
        var logProbs = new List<float>[p];
        var samplingLogProbs = new List<float>[p];
        var stop = new GenerationStopReason?[p];
        try
        {
            for (int i = 0; i < p; i++)
            {
                samplers[i] = LlamaSampler.Create(options.Sampling with { Seed = unchecked(seed + (uint)i) });
                tokens[i] = [];
                logProbs[i] = [];
                samplingLogProbs[i] = [];
            }
            ctx.Clear();
            using var batch = new LlamaBatch(ctx.BatchSize);
            var outputs = new List<(int Seq, int Index)>();

            void DecodeAndSample()
            {
                ctx.Decode(batch);
                foreach (var (seq, index) in outputs)
                {
                    var s = samplers[seq].Sample(ctx, index);
                    tokens[seq].Add(s.Token);
                    logProbs[seq].Add(s.RawLogProb);
                    samplingLogProbs[seq].Add(s.BehaviorLogProb);
                    if (options.StopAtEndOfGeneration && vocab.IsEndOfGeneration(s.Token)) stop[seq] = GenerationStopReason.EndOfGeneration;
                    else if (tokens[seq].Count >= options.MaxTokens) stop[seq] = GenerationStopReason.MaxTokens;
                }
                batch.Clear();
                outputs.Clear();
            }

            // Prompts, in chunks of the batch size; each prompt's last token asks for logits.
            for (int i = 0; i < p; i++)
            {
                var prompt = prompts[i];
                for (int j = 0; j < prompt.Length; j++)
                {
                    if (batch.Count == batch.Capacity) DecodeAndSample();
                    bool last = j == prompt.Length - 1;
                    int index = batch.Add(prompt[j], j, i, last);
                    if (last) outputs.Add((i, index));
                }
            }
            if (batch.Count > 0) DecodeAndSample();

            // One token per live sequence per step.
            while (true)
            {
                for (int i = 0; i < p; i++)
                {
                    if (stop[i] != null) continue;
                    outputs.Add((i, batch.Add(tokens[i][^1], prompts[i].Length + tokens[i].Count - 1, i, true)));
                }
                if (batch.Count == 0) break;
                DecodeAndSample();
            }

            var result = new GeneratedSequence[p];
            for (int i = 0; i < p; i++)
            {
                var ids = tokens[i].ToArray();
                int textLen = stop[i] == GenerationStopReason.EndOfGeneration ? ids.Length - 1 : ids.Length;
                result[i] = new GeneratedSequence(prompts[i].ToArray(), ids, logProbs[i].ToArray(), samplingLogProbs[i].ToArray(),
                    vocab.DecodePieces(ids.AsSpan(0, textLen)), stop[i]!.Value);
            }
            return result;
        }
        finally
        {
            foreach (var s in samplers) s?.Dispose();
        }
    }
}
