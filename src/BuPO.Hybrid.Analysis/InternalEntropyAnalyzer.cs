using System.Diagnostics;
using BuPO.Hybrid.Data;
using BuPO.Hybrid.Llama;
using BuPO.Hybrid.Rollout;
using BuPO.Hybrid.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace BuPO.Hybrid.Analysis;

/// <summary>
/// The entry point of <c>bupo-hybrid analyze</c> and of <c>train --bupo-layer auto</c>: entropies of a model's internal
/// policies (BUPO_SPEC.md §1-2) averaged over positions, the ΔH metrics and the boundary layer.
/// <code>
/// var result = InternalEntropyAnalyzer.Run(
///     AnalyzeOptions.PaperProtocol("model.gguf", generateTokens: 512) with { Engine = AnalysisEngine.Torch },
///     PromptDataset.Load("math500", limit: 32));
/// int k = result.BoundaryLayer;
/// </code>
/// Per sequence and block k it reads H^{k-1}, H^k, X^k, A^k, Y^k, F^k from the chosen engine and applies the same
/// <see cref="LensHead"/> (the unembedding, in chunks, on <see cref="AnalyzeOptions.Device"/>) to all of them; the
/// final policy is the full head on H^{L-1}. Means are token-weighted over all selected positions of all sequences.
/// </summary>
public static class InternalEntropyAnalyzer
{
    /// <summary>Analyzes text prompts (the problem of each item; with <see cref="AnalyzeOptions.Chat"/> its chat messages).</summary>
    /// <exception cref="BupoException">Bad input: missing or invalid model, empty prompt, prompt longer than the context, ...</exception>
    public static AnalysisResult Run(AnalyzeOptions options, IReadOnlyList<PromptItem> prompts, IProgress<AnalyzeProgress>? progress = null,
        CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        return RunCore(options, prompts, null, progress, cancellation);
    }

    /// <summary>Analyzes text prompts.</summary>
    public static AnalysisResult Run(AnalyzeOptions options, IReadOnlyList<string> prompts, IProgress<AnalyzeProgress>? progress = null,
        CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        return RunCore(options, prompts.Select((p, i) => new PromptItem($"prompt-{i}", p, null)).ToArray(), null, progress, cancellation);
    }

    /// <summary>
    /// Analyzes prompts given as token ids, used exactly as given (add BOS yourself where the model wants it); with
    /// <see cref="AnalyzeOptions.GenerateTokens"/> they are continued first. <see cref="AnalyzeOptions.Chat"/> is ignored.
    /// </summary>
    public static AnalysisResult Run(AnalyzeOptions options, IReadOnlyList<int[]> promptTokenIds, IProgress<AnalyzeProgress>? progress = null,
        CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(promptTokenIds);
        return RunCore(options, null, promptTokenIds, progress, cancellation);
    }

    private static AnalysisResult RunCore(AnalyzeOptions options, IReadOnlyList<PromptItem>? texts, IReadOnlyList<int[]>? ids,
        IProgress<AnalyzeProgress>? progress, CancellationToken cancellation)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var count = texts?.Count ?? ids!.Count;
        if (count == 0) throw new BupoException("no prompts to analyze");
        var path = options.ModelPath ?? options.Model!.SourcePath;
        LlamaModel.ValidateGgufMagic(path); // the metadata check runs in TransformerConfig.FromGguf and LlamaModel.Load
        path = Path.GetFullPath(path);
        var config = options.Model?.Config ?? TransformerConfig.FromGguf(path); // unsupported architectures stop here
        var blocks = options.Layers ?? Enumerable.Range(0, config.LayerCount).ToArray();
        foreach (var k in blocks)
            if (k < 0 || k >= config.LayerCount)
                throw new BupoException($"--layers: block {k} is out of range: the model has {config.LayerCount} blocks, 0..{config.LayerCount - 1}");
        blocks = blocks.Distinct().Order().ToArray();
        if (blocks.Count == 0) throw new BupoException("--layers selects no block");

        // llama.cpp is needed to tokenize text, to generate, and for the llama engine; a vocab-only load suffices to tokenize.
        var needLlama = options.Engine == AnalysisEngine.Llama || options.GenerateTokens > 0 || texts is not null;
        LlamaModel? llm = null;
        try
        {
            if (needLlama)
            {
                LlamaBackend.EnsureInitialized();
                var full = options.Engine == AnalysisEngine.Llama || options.GenerateTokens > 0;
                llm = LlamaModel.Load(path, new LlamaModelOptions { VocabOnly = !full, GpuLayers = options.GpuLayers });
            }
            var context = options.ContextSize ?? (llm?.TrainContextSize is > 0 ? llm.TrainContextSize : ReadContextLength(path, config.Architecture));
            var prompts = texts is not null ? Tokenize(llm!, texts, options) : ids!.Select(p => p?.ToArray()!).ToArray();
            var vocab = config.VocabSize;
            for (var i = 0; i < prompts.Length; i++)
            {
                var p = prompts[i];
                if (p is null || p.Length == 0) throw new BupoException($"prompt {i} is empty (it gives no tokens)");
                foreach (var t in p)
                    if ((uint)t >= (uint)vocab) throw new BupoException($"prompt {i} holds token {t}, outside the vocabulary [0, {vocab})");
                if (context > 0 && p.Length + options.GenerateTokens > context)
                    throw new BupoException(options.GenerateTokens > 0
                        ? $"prompt {i} is {p.Length} tokens long; with {options.GenerateTokens} tokens to generate that exceeds the context of {context} tokens (--ctx)"
                        : $"prompt {i} is {p.Length} tokens long, more than the context of {context} tokens (--ctx)");
            }
            cancellation.ThrowIfCancellationRequested();
            var sequences = options.GenerateTokens > 0
                ? Generate(llm!, prompts, options, progress, cancellation)
                : prompts.Select(p => new AnalysisSequence(p, p.Length)).ToArray();
            return Analyze(options, path, config, blocks, llm, sequences, progress, cancellation);
        }
        finally
        {
            llm?.Dispose();
        }
    }

    private static int ReadContextLength(string path, string arch)
    {
        using var file = Gguf.GgufFile.Open(path);
        return (int)(file.GetInt($"{arch}.context_length") ?? 0);
    }

    /// <summary>Token ids of text prompts as the CLI and the analyzer build them (chat template when asked).</summary>
    public static int[][] Tokenize(LlamaModel model, IReadOnlyList<PromptItem> prompts, AnalyzeOptions options)
    {
        var vocab = model.Vocab;
        var result = new int[prompts.Count][];
        for (var i = 0; i < prompts.Count; i++)
        {
            var item = prompts[i];
            if (item is null || string.IsNullOrWhiteSpace(item.Problem) && item.Messages is not { Count: > 0 })
                throw new BupoException($"prompt {i} is empty");
            string text;
            if (options.Chat)
            {
                var messages = item.Messages?.Select(m => new LlamaChatMessage(m.Role, m.Content)).ToList()
                               ?? [new LlamaChatMessage("user", item.Problem)];
                if (options.SystemPrompt is { } sys && !messages.Any(m => m.Role == "system"))
                    messages.Insert(0, new LlamaChatMessage("system", sys));
                text = model.ApplyChatTemplate(messages, addAssistant: true);
            }
            else text = item.Problem;
            var ids = vocab.Encode(text, addSpecial: true, parseSpecial: true);
            // A template that writes BOS itself plus add_bos would give two.
            if (options.Chat && ids.Length >= 2 && vocab.BosId >= 0 && ids[0] == vocab.BosId && ids[1] == vocab.BosId) ids = ids[1..];
            result[i] = ids;
        }
        return result;
    }

    private static AnalysisSequence[] Generate(LlamaModel llm, int[][] prompts, AnalyzeOptions options, IProgress<AnalyzeProgress>? progress,
        CancellationToken cancellation)
    {
        var result = new AnalysisSequence[prompts.Length];
        progress?.Report(new AnalyzeProgress("generate", 0, prompts.Length, 0));
        // The rollout engine on the analyzer's own model: GenerateParallel sequences decode together, each prompt
        // sampled once from the full distribution at the temperature (stream derived from the seed and its index).
        using var engine = new RolloutEngine(llm, new RolloutEngineOptions
        {
            Parallel = Math.Clamp(options.GenerateParallel, 1, RolloutEngine.MaxParallel),
            Threads = options.Threads,
            KvCacheType = options.KvCacheType,
        });
        long tokens = 0;
        var generated = engine.Generate(new RolloutRequest(prompts, 1, new RolloutSampling { Temperature = options.Temperature, MaxTokens = options.GenerateTokens },
            options.Seed), progress is null ? null : new SyncProgress<int>(n => progress.Report(new AnalyzeProgress("generate", n, prompts.Length, 0))),
            cancellation);
        for (var i = 0; i < prompts.Length; i++)
        {
            result[i] = new AnalysisSequence([.. prompts[i], .. generated[i].ResponseTokens], prompts[i].Length);
            tokens += generated[i].ResponseTokens.Length;
        }
        progress?.Report(new AnalyzeProgress("generate", prompts.Length, prompts.Length, tokens));
        return result;
    }

    /// <summary>
    /// Analyzes ready sequences (no tokenization, no generation; <see cref="AnalyzeOptions.GenerateTokens"/> and
    /// <see cref="AnalyzeOptions.Chat"/> are ignored): the lowest-level entry.
    /// </summary>
    public static AnalysisResult Analyze(AnalyzeOptions options, IReadOnlyList<AnalysisSequence> sequences, IProgress<AnalyzeProgress>? progress = null,
        CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(sequences);
        if (sequences.Count == 0) throw new BupoException("no sequences to analyze");
        options.Check(sequencesGiven: true);
        var path = options.ModelPath ?? options.Model!.SourcePath;
        LlamaModel.ValidateGgufMagic(path); // the metadata check runs in TransformerConfig.FromGguf and LlamaModel.Load
        path = Path.GetFullPath(path);
        var config = options.Model?.Config ?? TransformerConfig.FromGguf(path);
        var blocks = (options.Layers ?? Enumerable.Range(0, config.LayerCount).ToArray()).Distinct().Order().ToArray();
        if (blocks.Length == 0 || blocks[0] < 0 || blocks[^1] >= config.LayerCount)
            throw new BupoException($"--layers: blocks must lie in 0..{config.LayerCount - 1}");
        for (var i = 0; i < sequences.Count; i++)
            if (sequences[i].Tokens.Length == 0 || sequences[i].PromptLength < 1 || sequences[i].PromptLength > sequences[i].Tokens.Length)
                throw new BupoException($"sequence {i}: empty, or its prompt length {sequences[i].PromptLength} is outside 1..{sequences[i].Tokens.Length}");
        return Analyze(options, path, config, blocks, null, sequences, progress, cancellation);
    }

    private static AnalysisResult Analyze(AnalyzeOptions options, string path, TransformerConfig config, IReadOnlyList<int> blocks, LlamaModel? llm,
        IReadOnlyList<AnalysisSequence> sequences, IProgress<AnalyzeProgress>? progress, CancellationToken cancellation)
    {
        TorchRuntime.EnsureInitialized();
        var nLayer = config.LayerCount;
        var request = new StateRequest(nLayer, blocks);
        var selections = sequences.Select(s => s.Select(options.Positions)).ToArray();
        if (selections.All(s => s.Count == 0))
            throw new BupoException($"no positions to analyze: --positions {options.Positions.ToString().ToLowerInvariant()} selects none (responses need --generate N)");
        var maxLength = sequences.Max(s => s.Tokens.Length);
        var accumulator = new EntropyAccumulator(nLayer, keepPerToken: options.PerToken);
        var ownLlm = false;
        LensHead? head = null;
        TransformerModel? ownModel = null;
        IStateEngine? engine = null;
        try
        {
            var device = options.Model?.Device ?? ModelDevice.Parse(options.Device);
            if (options.Engine == AnalysisEngine.Torch)
            {
                var model = options.Model ?? (ownModel = TransformerModel.FromGguf(path, device));
                head = LensHead.FromModel(model, options.ChunkSize);
                engine = new TorchStateEngine(model, request);
            }
            else
            {
                if (llm is null)
                {
                    LlamaBackend.EnsureInitialized();
                    llm = LlamaModel.Load(path, new LlamaModelOptions { GpuLayers = options.GpuLayers });
                    ownLlm = true;
                }
                head = LensHead.FromGguf(path, device, options.ChunkSize);
                engine = new LlamaStateEngine(llm, request, maxLength, options);
            }

            var sites = new List<(LensSite Site, int Block)>();
            foreach (var k in request.ResidualBlocks) sites.Add((LensSite.Layer, k));
            foreach (var k in request.ModuleBlocks)
                foreach (var s in new[] { LensSite.Attention, LensSite.Ffn, LensSite.AttentionInput, LensSite.FfnInput }) sites.Add((s, k));

            long tokens = 0;
            progress?.Report(new AnalyzeProgress("analyze", 0, sequences.Count, 0));
            for (var i = 0; i < sequences.Count; i++)
            {
                cancellation.ThrowIfCancellationRequested();
                var (selStart, selCount) = selections[i];
                if (selCount == 0) { progress?.Report(new AnalyzeProgress("analyze", i + 1, sequences.Count, tokens)); continue; }
                // Per site: the entropies of the selected positions, filled chunk by chunk.
                var values = sites.ToDictionary(s => s, _ => new float[selCount]);
                var embd = new float[selCount];
                var final = new float[selCount];
                foreach (var chunk in engine.Run(sequences[i].Tokens))
                {
                    using (chunk)
                    {
                        var from = Math.Max(selStart, chunk.Start);
                        var to = Math.Min(selStart + selCount, chunk.Start + chunk.Length);
                        if (to <= from) continue;
                        var rows = to - from;
                        using var scope = NewDisposeScope();
                        Tensor Rows(Tensor t) => t.narrow(0, from - chunk.Start, rows);
                        // One unembedding pass over every site of the chunk (chosen norm), one for the final policy.
                        var stacked = cat([Rows(chunk.Embedding), .. sites.Select(s => Rows(chunk.States[s]).to_type(chunk.Embedding.dtype))], 0);
                        var h = head.Entropy(stacked, options.Norm);
                        var at = from - selStart;
                        h.AsSpan(0, rows).CopyTo(embd.AsSpan(at));
                        for (var j = 0; j < sites.Count; j++) h.AsSpan((j + 1) * rows, rows).CopyTo(values[sites[j]].AsSpan(at));
                        head.Entropy(Rows(chunk.States[(LensSite.Layer, nLayer - 1)]), LensNorm.Final).CopyTo(final.AsSpan(at));
                    }
                }
                // NaN weights would otherwise print "-" everywhere and a fallback boundary layer: stop at the first such position.
                RequireFinite(path, i, selStart, embd, "the embedding");
                RequireFinite(path, i, selStart, final, "the final policy");
                foreach (var s in sites) RequireFinite(path, i, selStart, values[s], $"block {s.Block} {s.Site}");
                accumulator.BeginSequence(selCount);
                accumulator.AddEmbedding(embd);
                accumulator.AddFinal(final);
                foreach (var s in sites) accumulator.Add(s.Site, s.Block, values[s]);
                tokens += sequences[i].Tokens.Length;
                progress?.Report(new AnalyzeProgress("analyze", i + 1, sequences.Count, tokens));
            }
        }
        finally
        {
            engine?.Dispose();
            head?.Dispose();
            ownModel?.Dispose();
            if (ownLlm) llm?.Dispose();
        }

        var all = accumulator.Layers();
        var layers = blocks.Select(k => all[k]).ToArray();
        var choice = Boundary(layers, nLayer, options.Tau);
        IReadOnlyList<float[][]>? perToken = null;
        if (accumulator.PerToken is { } pt)
            perToken = pt.Select(seq => seq.Select(row => blocks.Select(k => row[k]).ToArray()).ToArray()).ToArray();
        return new AnalysisResult
        {
            Model = path,
            Architecture = config.Architecture,
            NLayer = nLayer,
            Norm = options.Norm == LensNorm.Final ? "final" : "none",
            Engine = options.Engine == AnalysisEngine.Torch ? "torch" : "llama",
            TokenIds = sequences.Select(s => s.Tokens).ToArray(),
            PromptLengths = sequences.Select(s => s.PromptLength).ToArray(),
            Layers = layers,
            FinalEntropy = accumulator.FinalEntropy,
            EmbeddingEntropy = accumulator.EmbeddingEntropy,
            BoundaryLayer = choice.Layer,
            BoundaryLayerReason = (choice.FromRule ? "rule: " : "fallback: ") + choice.Reason,
            Positions = options.Positions.ToString().ToLowerInvariant(),
            PositionCount = accumulator.PositionCount,
            PerToken = perToken,
        };
    }

    private static void RequireFinite(string path, int sequence, int firstPosition, float[] entropies, string site)
    {
        for (var j = 0; j < entropies.Length; j++)
        {
            if (float.IsFinite(entropies[j])) continue;
            var tensor = FirstNonFiniteTensor(path);
            throw new BupoException($"{path}: the entropy of {site} at prompt {sequence}, position {firstPosition + j} is {entropies[j]}: " +
                (tensor != null ? $"tensor '{tensor}' holds non-finite values" : "non-finite logits (the weights are finite; an overflow in the forward?)"));
        }
    }

    /// <summary>The first tensor of the file holding a NaN or an infinity (dequantized), or null. Only on the error path: it reads every weight.</summary>
    private static string? FirstNonFiniteTensor(string path)
    {
        using var file = Gguf.GgufFile.Open(path);
        foreach (var t in file.Tensors)
        {
            float[] values;
            try { values = file.ReadTensorFloat(t); }
            catch (BupoException) { continue; }
            foreach (var v in values)
                if (!float.IsFinite(v)) return t.Name;
        }
        return null;
    }

    /// <summary>The boundary layer rule on the analyzed blocks (a subset is scanned in block order).</summary>
    private static BoundaryLayerChoice Boundary(IReadOnlyList<LayerEntropy> layers, int nLayer, double tau)
    {
        var choice = BoundaryLayerRule.Find(layers.Select(l => l.DeltaFfn).ToArray(), tau);
        var full = layers.Count == nLayer;
        if (full) return choice;
        if (!choice.FromRule)
        {
            var fb = BoundaryLayerRule.FallbackLayer(nLayer);
            return new(fb, false, $"no analyzed block has ΔH_FFN > {tau:0.###} nats; fallback k = round(L/6) - 1 = {fb}");
        }
        var end = choice.Layer;
        var start = end;
        while (start > 0 && layers[start - 1].DeltaFfn > tau) start--;
        return new(layers[end].Index, true,
            $"analyzed blocks {layers[start].Index}..{layers[end].Index} (of the --layers subset) have ΔH_FFN > {tau:0.###} nats; block {layers[end].Index} is the last before integration/convergence");
    }
}
