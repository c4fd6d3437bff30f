using System.Globalization;
using BuPO.Hybrid.Gguf;
using BuPO.Hybrid.Model;

namespace BuPO.Hybrid.Analysis;

/// <summary>Where the internal states come from.</summary>
public enum AnalysisEngine
{
    /// <summary>llama.cpp's compute graph, read through the eval callback (<c>l_out-k</c>, <c>attn_norm-k</c>, ...).</summary>
    Llama,
    /// <summary>The TorchSharp trainer model (<see cref="TransformerModel"/>) and its forward captures.</summary>
    Torch,
}

/// <summary>Which positions of each sequence are averaged over.</summary>
public enum AnalysisPositions
{
    /// <summary>Every position of the sequence (prompt and response).</summary>
    All,
    /// <summary>The positions of the prompt tokens, 0..P-1.</summary>
    Prompt,
    /// <summary>
    /// The positions whose policies produced the response tokens: P-1..T-2 (one per response token, as the paper and
    /// verl average "per generated token"). Needs sequences with a response (<see cref="AnalyzeOptions.GenerateTokens"/>).
    /// </summary>
    Response,
}

/// <summary>Settings of <see cref="InternalEntropyAnalyzer"/> (the CLI's <c>analyze</c> options).</summary>
public sealed record AnalyzeOptions
{
    /// <summary>The GGUF model. Required unless <see cref="Model"/> is given (then it defaults to the model's source file).</summary>
    public string? ModelPath { get; init; }

    /// <summary>
    /// An already loaded trainer model for the torch engine (e.g. the trainer's own, on its device and dtype): used instead
    /// of loading <see cref="ModelPath"/>, and not disposed. Tokenization and generation still use the GGUF file.
    /// </summary>
    public TransformerModel? Model { get; init; }

    /// <summary>Where the states come from. Default llama.cpp.</summary>
    public AnalysisEngine Engine { get; init; } = AnalysisEngine.Llama;

    /// <summary>Identity (BuPO's internal policy, the default) or Final (logit lens: the final RMSNorm first).</summary>
    public LensNorm Norm { get; init; } = LensNorm.Identity;

    /// <summary>Blocks to analyze (0-based); null = all. The residual of the block below is computed too (for ΔH_Layer).</summary>
    public IReadOnlyList<int>? Layers { get; init; }

    /// <summary>Positions averaged over.</summary>
    public AnalysisPositions Positions { get; init; } = AnalysisPositions.All;

    /// <summary>Torch device of the unembedding (and of the torch engine's model): cpu, cuda, cuda:N.</summary>
    public string Device { get; init; } = "cpu";

    /// <summary>Positions per unembedding chunk: at most [chunk x vocab] logits exist at once.</summary>
    public int ChunkSize { get; init; } = 1024;

    /// <summary>Keep per-position layer entropies in <see cref="AnalysisResult.PerToken"/>.</summary>
    public bool PerToken { get; init; }

    /// <summary>Threshold τ of the boundary layer rule (nats).</summary>
    public double Tau { get; init; } = BoundaryLayerRule.DefaultTau;

    /// <summary>Apply the model's chat template to text prompts (user turn, then the opening of an assistant turn).</summary>
    public bool Chat { get; init; }

    /// <summary>A system message for <see cref="Chat"/> (items with their own chat messages keep theirs).</summary>
    public string? SystemPrompt { get; init; }

    /// <summary>Sample up to this many response tokens per prompt with llama.cpp before analyzing (0 = none).</summary>
    public int GenerateTokens { get; init; }

    /// <summary>Sampling temperature for <see cref="GenerateTokens"/> (1.0 as the paper; top-p 1, no top-k).</summary>
    public float Temperature { get; init; } = 1f;

    /// <summary>Sampling seed; prompt i samples with seed + i.</summary>
    public uint Seed { get; init; } = 42;

    /// <summary>Longest sequence (prompt + response) allowed, in tokens; null = the model's training context.</summary>
    public int? ContextSize { get; init; }

    /// <summary>llama.cpp KV cache type (llama engine and generation). The default F32 also turns flash attention off, so
    /// llama.cpp's attention runs in float32: per-block entropies within ~1e-6 nats of a float64 forward, where the F16
    /// cache of the rollouts (null = llama.cpp's default, or F16) is off by up to ~1e-3.</summary>
    public GgmlType? KvCacheType { get; init; } = GgmlType.F32;

    /// <summary>Positions per llama.cpp decode in the llama engine (n_batch = n_ubatch); longer sequences are decoded in chunks.</summary>
    public int LlamaBatchSize { get; init; } = 512;

    /// <summary>CPU threads for llama.cpp (0 = all processors).</summary>
    public int Threads { get; init; }

    /// <summary>Layers llama.cpp offloads to a GPU (-1 = all; needs a GPU build of llama.cpp).</summary>
    public int GpuLayers { get; init; } = -1;

    /// <summary>Prompts generated together in one llama.cpp batch.</summary>
    public int GenerateParallel { get; init; } = 16;

    /// <summary>The system prompt of the paper's training and validation data (BUPO_SPEC.md §4).</summary>
    public const string PaperSystemPrompt = "Please reason step by step, and put your final answer within \\boxed{}.";

    /// <summary>The paper's analysis protocol: chat template, responses sampled at T = 1.0, response positions only, no norm.</summary>
    public static AnalyzeOptions PaperProtocol(string modelPath, int generateTokens) =>
        new AnalyzeOptions { ModelPath = modelPath }.WithPaperProtocol(generateTokens);

    /// <summary>These options under the paper's protocol (see <see cref="PaperProtocol"/>): chat template with
    /// <paramref name="systemPrompt"/> (default <see cref="PaperSystemPrompt"/>), <paramref name="generateTokens"/> sampled at
    /// T = 1, response positions, no norm; everything else as it is.</summary>
    public AnalyzeOptions WithPaperProtocol(int generateTokens, string? systemPrompt = null) => this with
    {
        Chat = true,
        SystemPrompt = systemPrompt ?? PaperSystemPrompt,
        GenerateTokens = generateTokens,
        Temperature = 1f,
        Positions = AnalysisPositions.Response,
        Norm = LensNorm.Identity,
    };

    /// <summary>
    /// Parses a block list such as <c>0,3,5-8</c> (0-based, inclusive ranges) against <paramref name="nLayer"/> blocks;
    /// the result is sorted and distinct.
    /// </summary>
    /// <exception cref="BupoException">Malformed, empty, or outside 0..nLayer-1.</exception>
    public static IReadOnlyList<int> ParseLayers(string spec, int nLayer)
    {
        if (string.IsNullOrWhiteSpace(spec)) throw new BupoException("--layers is empty: give blocks like 0,3,5-8");
        var set = new SortedSet<int>();
        foreach (var raw in spec.Split(',', StringSplitOptions.TrimEntries))
        {
            if (raw.Length == 0) throw new BupoException($"--layers {spec}: empty entry");
            var dash = raw.IndexOf('-', 1);
            int a, b;
            if (dash > 0)
            {
                if (!TryInt(raw[..dash], out a) || !TryInt(raw[(dash + 1)..], out b) || b < a)
                    throw new BupoException($"--layers {spec}: '{raw}' is not a range like 2-5");
            }
            else if (!TryInt(raw, out a)) throw new BupoException($"--layers {spec}: '{raw}' is not a block number");
            else b = a;
            if (a < 0 || b >= nLayer)
                throw new BupoException($"--layers {spec}: block {(a < 0 ? a : b)} is out of range: the model has {nLayer} blocks, 0..{nLayer - 1}");
            for (var k = a; k <= b; k++) set.Add(k);
        }
        return set.ToArray();
    }

    private static bool TryInt(string s, out int v) => int.TryParse(s.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out v);

    /// <summary>Checks the values that need no model; throws <see cref="BupoException"/> naming the option.</summary>
    public void Validate() => Check(sequencesGiven: false);

    internal void Check(bool sequencesGiven)
    {
        if (ChunkSize <= 0) throw new BupoException($"--chunk-size must be positive, got {ChunkSize}");
        if (GenerateTokens < 0) throw new BupoException($"--generate must be >= 0, got {GenerateTokens}");
        if (!float.IsFinite(Temperature) || Temperature < 0) throw new BupoException($"--temperature must be >= 0, got {Temperature}");
        if (ContextSize is <= 0) throw new BupoException($"--ctx must be positive, got {ContextSize}");
        if (LlamaBatchSize <= 0) throw new BupoException($"--llama-batch must be positive, got {LlamaBatchSize}");
        if (Threads < 0) throw new BupoException($"--threads must be >= 0, got {Threads}");
        if (GpuLayers < -1) throw new BupoException($"--gpu-layers must be >= -1, got {GpuLayers}");
        if (GenerateParallel <= 0) throw new BupoException($"generate parallelism must be positive, got {GenerateParallel}");
        if (!double.IsFinite(Tau)) throw new BupoException($"--tau must be a number, got {Tau}");
        if (Positions == AnalysisPositions.Response && GenerateTokens == 0 && !sequencesGiven)
            throw new BupoException("--positions response needs responses: give --generate N");
        if (Model is null && string.IsNullOrWhiteSpace(ModelPath)) throw new BupoException("no model given (--model)");
        if (Model is not null && Engine != AnalysisEngine.Torch) throw new BupoException("a loaded trainer model is analyzed by the torch engine only");
    }
}

/// <summary>One sequence to analyze: the token ids (BOS included when the model adds it) and how many of them are prompt.</summary>
public sealed record AnalysisSequence(int[] Tokens, int PromptLength)
{
    /// <summary>Positions selected by <paramref name="which"/>, as a range [start, start + count).</summary>
    public (int Start, int Count) Select(AnalysisPositions which) => which switch
    {
        AnalysisPositions.All => (0, Tokens.Length),
        AnalysisPositions.Prompt => (0, PromptLength),
        _ => Tokens.Length > PromptLength ? (PromptLength - 1, Tokens.Length - PromptLength) : (0, 0),
    };
}

/// <summary>Progress of a run: <paramref name="Stage"/> is "generate" or "analyze"; counts are sequences.</summary>
public readonly record struct AnalyzeProgress(string Stage, int Done, int Total, long Tokens);
