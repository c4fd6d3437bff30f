using System.Diagnostics;
using BuPO.Hybrid.Data;
using BuPO.Hybrid.Llama;
using BuPO.Hybrid.Tokenizers;

namespace BuPO.Hybrid.RL.Training;

/// <summary>
/// <see cref="IRolloutSampler"/> on llama.cpp: responses are generated in batches of <c>parallel</c> sequences with
/// <see cref="LlamaGenerator"/> (one context, cleared per batch), each sequence with its own seeded sampler. Stop strings
/// end a response after the token that completes the first one.
/// </summary>
public sealed class LlamaRolloutSampler : IRolloutSampler
{
    private readonly int _parallel;
    private readonly int _contextSize;
    private readonly int _threads;
    private readonly int _gpuLayers;
    private LlamaModel _model;
    private LlamaContext? _context;
    private LlamaLoraAdapter? _lora;
    private int _contextCells;

    public LlamaRolloutSampler(string ggufPath, int parallel = 64, int contextSize = 0, int threads = 0, int gpuLayers = 0, string? llamaLibDir = null)
    {
        if (parallel < 1) throw new BupoException($"--parallel must be positive, got {parallel}");
        _parallel = parallel;
        _contextSize = contextSize;
        _threads = threads;
        _gpuLayers = gpuLayers;
        if (!LlamaBackend.IsInitialized) LlamaBackend.Initialize(llamaLibDir, minLevel: LlamaLogLevel.Error);
        _model = LlamaModel.Load(ggufPath, new LlamaModelOptions { GpuLayers = gpuLayers });
    }

    public ITextTokenizer Tokenizer => _model.Vocab;
    public string ModelPath => _model.Path;
    public double LastTokensPerSecond { get; private set; }

    /// <summary>The model's training context length (0 when unknown).</summary>
    public int TrainContextSize => _model.TrainContextSize;

    public string? ApplyChatTemplate(IReadOnlyList<ChatMessage> messages)
    {
        if (_model.ChatTemplate == null) return null;
        return _model.ApplyChatTemplate(messages.Select(m => new LlamaChatMessage(m.Role, m.Content)).ToArray(), addAssistant: true);
    }

    public IReadOnlyList<SampledResponse> Generate(IReadOnlyList<int[]> promptTokens, int samplesPerPrompt, SamplerSettings sampling, ulong seed,
        CancellationToken ct = default)
    {
        var jobs = new List<(int Prompt, int[] Tokens)>();
        for (var i = 0; i < promptTokens.Count; i++)
            for (var j = 0; j < samplesPerPrompt; j++) jobs.Add((i, promptTokens[i]));
        var results = new SampledResponse[jobs.Count];
        var sw = Stopwatch.StartNew();
        long generated = 0;
        for (var start = 0; start < jobs.Count; start += _parallel)
        {
            ct.ThrowIfCancellationRequested();
            var n = Math.Min(_parallel, jobs.Count - start);
            var chunk = jobs.GetRange(start, n);
            var ctx = EnsureContext(n, chunk.Sum(c => (long)c.Tokens.Length + sampling.MaxTokens));
            var chunkSeed = (uint)(SeedMix.Mix(seed, (ulong)start) & 0xFFFFFFFF);
            var outputs = new LlamaGenerator(ctx).Generate(chunk.Select(c => c.Tokens).ToArray(), new GenerationOptions
            {
                MaxTokens = sampling.MaxTokens,
                Sampling = new LlamaSamplerOptions
                {
                    Temperature = (float)sampling.Temperature, TopP = (float)sampling.TopP, TopK = sampling.TopK, MinP = (float)sampling.MinP, Seed = chunkSeed,
                },
            });
            for (var i = 0; i < n; i++)
            {
                var o = outputs[i];
                generated += o.Tokens.Length;
                results[start + i] = ApplyStops(chunk[i].Prompt, o, sampling.StopStrings);
            }
        }
        LastTokensPerSecond = generated / Math.Max(sw.Elapsed.TotalSeconds, 1e-9);
        return results;
    }

    private SampledResponse ApplyStops(int prompt, GeneratedSequence o, IReadOnlyList<string> stops)
    {
        var hitMax = o.StopReason == GenerationStopReason.MaxTokens;
        if (stops.Count == 0 || !stops.Any(s => s.Length > 0 && o.Text.Contains(s, StringComparison.Ordinal)))
            return new SampledResponse(prompt, o.Tokens, o.SamplingLogProbs, o.Text, hitMax);
        // Keep tokens up to the one that completes the first stop string.
        var vocab = _model.Vocab;
        for (var len = 1; len <= o.Tokens.Length; len++)
        {
            var text = vocab.DecodePieces(o.Tokens.AsSpan(0, len));
            var at = stops.Where(s => s.Length > 0).Select(s => text.IndexOf(s, StringComparison.Ordinal)).Where(i => i >= 0).DefaultIfEmpty(-1).Min();
            if (at < 0) continue;
            return new SampledResponse(prompt, o.Tokens[..len], o.SamplingLogProbs[..len], text, false);
        }
        return new SampledResponse(prompt, o.Tokens, o.SamplingLogProbs, o.Text, hitMax);
    }

    private LlamaContext EnsureContext(int sequences, long cells)
    {
        var need = (int)Math.Min(int.MaxValue / 2, (cells + 255) / 256 * 256);
        if (_contextSize > 0)
        {
            if (need > _contextSize) throw new BupoException($"--context-size {_contextSize} is too small for {sequences} sequences needing {cells} KV cells: raise it or lower --parallel");
            need = _contextSize;
        }
        if (_context != null && _contextCells >= need) return _context;
        _context?.Dispose();
        _context = null;
        _context = LlamaContext.Create(_model, new LlamaContextOptions
        {
            ContextSize = need,
            MaxSequences = _parallel,
            BatchSize = Math.Max(512, _parallel),
            UBatchSize = 512,
            Threads = _threads,
        });
        if (_lora != null) _context.ApplyLora(_lora);
        _contextCells = need;
        return _context;
    }

    public void SetLora(string? adapterPath)
    {
        var next = adapterPath == null ? null : LlamaLoraAdapter.Load(_model, adapterPath);
        if (_context != null)
        {
            _context.ClearLora();
            if (next != null) _context.ApplyLora(next);
        }
        _lora?.Dispose();
        _lora = next;
    }

    public void ReloadModel(string ggufPath)
    {
        var next = LlamaModel.Load(ggufPath, new LlamaModelOptions { GpuLayers = _gpuLayers });
        _context?.Dispose();
        _lora?.Dispose();
        _lora = null;
        _context = null;
        _contextCells = 0;
        _model.Dispose();
        _model = next;
    }

    public void Dispose()
    {
        _context?.Dispose();
        _context = null;
        _lora?.Dispose();
        _lora = null;
        _model.Dispose();
    }
}

/// <summary>SplitMix64-style seed derivation: independent streams from (seed, a, b, ...).</summary>
public static class SeedMix
{
    public static ulong Mix(ulong seed, params ulong[] parts)
    {
        var x = seed;
        foreach (var p in parts) x = Step(x ^ Step(p + 0x9E3779B97F4A7C15UL));
        return Step(x);
    }

    private static ulong Step(ulong z)
    {
        z += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
