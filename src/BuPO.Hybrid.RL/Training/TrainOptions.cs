using System.ComponentModel;
using System.Globalization;
using System.Reflection;
using System.Text;
using System.Text.Json;
using BuPO.Hybrid.Model;
using BuPO.Hybrid.Rollout;
using BuPO.Hybrid.RL.Algorithms;

namespace BuPO.Hybrid.RL.Training;

/// <summary>
/// Every setting of a training run. Each property is also a config-file key and a CLI option of <c>bupo-hybrid train</c>
/// under the same kebab-case name (<see cref="OptionName"/>: <c>Lr</c> is <c>"lr"</c> and <c>--lr</c>, <c>BupoLayer</c> is
/// <c>"bupo-layer"</c> and <c>--bupo-layer</c>). Defaults are BuPO's reference settings (BUPO_SPEC.md §4-6).
/// Resolve defaults &lt; config file &lt; CLI with <see cref="TrainConfig"/>; check with <see cref="Validate"/>.
/// </summary>
public sealed record TrainOptions
{
    // ------------------------------------------------------------------ model and data
    [Description("GGUF model to train (the trainer loads it in full precision; the sampler starts from it)")]
    public string? Model { get; init; }

    [Description("Training prompts: a known dataset name (deepmath5k, gsm8k, math500, ...) or a .jsonl/.txt file")]
    public string? Dataset { get; init; }

    [Description("Split of a known dataset (default: its usual one)")]
    public string? Split { get; init; }

    [Description("Use only the first N prompts of the dataset")]
    public int? Limit { get; init; }

    [Description("Folder holding the known datasets (<name>/<split>.jsonl)")]
    public string? DataDir { get; init; }

    [Description("JSONL field holding the problem (default: detected)")]
    public string? Field { get; init; }

    [Description("JSONL field holding the reference answer (default: detected)")]
    public string? AnswerField { get; init; }

    [Description("How a problem becomes the prompt (as eval): auto (qwen3_no_thinking for qwen3, chat with a chat template, else boxed), raw, boxed, chat, qwen3_no_thinking")]
    public string PromptTemplate { get; init; } = "auto";

    [Description("Prompts longer than this many tokens are left-truncated")]
    public int MaxPromptTokens { get; init; } = 1024;

    [Description("Reward: math (last \\boxed{} answer vs the reference, 1/0) or command (--reward-command)")]
    public string Reward { get; init; } = "math";

    [Description("Shell command computing rewards (JSON lines on stdin/stdout), for --reward command")]
    public string? RewardCommand { get; init; }

    [Description("A response counts as correct (the accuracy metric) when its reward is at least this")]
    public double AccuracyThreshold { get; init; } = 0.5;

    [Description("Output folder: metrics.jsonl, metrics.csv, config.json, sampler/, checkpoints/")]
    public string Output { get; init; } = "runs/bupo-train";

    // ------------------------------------------------------------------ rollouts
    [Description("Training steps (one rollout batch and its updates per step)")]
    public int Steps { get; init; } = 300;

    [Description("Prompts sampled per step")]
    public int PromptsPerStep { get; init; } = 128;

    [Description("Responses per prompt (the GRPO group size)")]
    public int SamplesPerPrompt { get; init; } = 8;

    [Description("Sampling temperature (the trainer's log-probs use the same temperature)")]
    public double Temperature { get; init; } = 1.0;

    [Description("Top-p of the sampler (1 = off)")]
    public double TopP { get; init; } = 1.0;

    [Description("Top-k of the sampler (0 = off)")]
    public int TopK { get; init; }

    [Description("Min-p of the sampler (0 = off)")]
    public double MinP { get; init; }

    [Description("Most tokens generated per response")]
    public int MaxResponseTokens { get; init; } = 8192;

    [Description("Stop strings (the response ends after the first one)")]
    public string[] Stop { get; init; } = [];

    [Description("Sequences the sampler decodes together")]
    public int Parallel { get; init; } = 64;

    [Description("Sampler KV cache size in tokens (0 = enough for --parallel sequences)")]
    public int ContextSize { get; init; }

    [Description("CPU threads of the sampler (0 = all processors)")]
    public int Threads { get; init; }

    [Description("Sampler layers offloaded to the GPU (-1 = all; needs a GPU build of llama.cpp)")]
    public int GpuLayers { get; init; }

    [Description("Folder of the llama.cpp libraries (default: $BUPO_LLAMA_LIB_DIR, then the bundled build)")]
    public string? LlamaLibDir { get; init; }

    [Description("Free the sampler's KV cache while the trainer updates (it is rebuilt for the next rollout)")]
    public bool SamplerSleep { get; init; } = true;

    [Description("Also unload the sampler's model while the trainer updates (loaded again for the next rollout; needs --sampler-sleep)")]
    public bool OffloadSampler { get; init; }

    // ------------------------------------------------------------------ algorithm
    [Description("Divide group-centered rewards by the group's std (GRPO); false: advantages are R - mean")]
    public bool AdvantageStd { get; init; } = true;

    [Description("PPO clip range below 1 (ratio >= 1 - clip-low)")]
    public double ClipLow { get; init; } = 0.2;

    [Description("PPO clip range above 1 (ratio <= 1 + clip-high)")]
    public double ClipHigh { get; init; } = 0.2;

    [Description("Dual-clip constant c for negative advantages (0 = off)")]
    public double DualClip { get; init; } = 10.0;

    [Description("Loss aggregation: token-mean (over the mini-batch's response tokens), seq-mean-token-mean, or seq-mean-token-sum-norm (Dr. GRPO: token sums over the constant max-response-tokens)")]
    public string LossAgg { get; init; } = "token-mean";

    [Description("Coefficient of the k3 KL-to-reference penalty (0 = off; the reference is the initial model)")]
    public double KlCoef { get; init; }

    [Description("Coefficient of the entropy bonus (0 = off)")]
    public double EntropyCoef { get; init; }

    [Description("BuPO: block k (0-based) whose internal policy is optimized first, or 'auto' (boundary-layer analysis); unset = GRPO")]
    public string? BupoLayer { get; init; }

    [Description("BuPO: steps (1-based, inclusive) that optimize block k's internal policy before the full policy (default 30 with --bupo-layer, else 0)")]
    public int? BupoSteps { get; init; }

    [Description("Prompts sampled for --bupo-layer auto's analysis")]
    public int AutoLayerPrompts { get; init; } = 16;

    [Description("Response tokens per prompt for --bupo-layer auto's analysis")]
    public int AutoLayerMaxTokens { get; init; } = 256;

    [Description("Threshold tau (nats) of the boundary-layer rule: blocks with dH_FFN > tau explore")]
    public double AutoLayerTau { get; init; } = 0.05;

    [Description("Truncated importance sampling against the quantized sampler: weight min(pi_trainer/pi_sampler, C) per token")]
    public bool Tis { get; init; } = true;

    [Description("Cap C of the truncated importance weight")]
    public double TisCap { get; init; } = 2.0;

    // ------------------------------------------------------------------ optimization
    [Description("AdamW learning rate")]
    public double Lr { get; init; } = 1e-6;

    [Description("AdamW beta1")]
    public double Beta1 { get; init; } = 0.9;

    [Description("AdamW beta2")]
    public double Beta2 { get; init; } = 0.999;

    [Description("AdamW epsilon")]
    public double AdamEps { get; init; } = 1e-8;

    [Description("AdamW decoupled weight decay")]
    public double WeightDecay { get; init; } = 0.01;

    [Description("Linear warm-up steps of the learning rate")]
    public int WarmupSteps { get; init; }

    [Description("Learning-rate schedule after warm-up: constant or cosine")]
    public string LrSchedule { get; init; } = "constant";

    [Description("Cosine schedule: final learning rate as a fraction of --lr")]
    public double MinLrRatio { get; init; }

    [Description("Gradient-norm clip (0 = off); a non-finite gradient norm always skips the optimizer step")]
    public double GradClip { get; init; } = 1.0;

    [Description("Prompts per mini-batch (one optimizer step each)")]
    public int MiniBatchPrompts { get; init; } = 32;

    [Description("Passes over each rollout batch")]
    public int PpoEpochs { get; init; } = 1;

    [Description("Token budget of a micro-batch (padded sequence tokens); gradients accumulate over micro-batches")]
    public int MicroBatchTokens { get; init; } = 16384;

    [Description("Shared-prefix training forward: the responses of a prompt share one forward of the prompt (same log-probs and gradients as one sequence each, fewer tokens)")]
    public bool SharedPrefix { get; init; } = true;

    [Description("Recompute blocks in backward instead of keeping activations")]
    public bool GradientCheckpointing { get; init; }

    [Description("Trainer device: cpu, cuda, cuda:N")]
    public string Device { get; init; } = "cpu";

    [Description("Trainer precision: float32; bf16 (or bfloat16): mixed precision, float32 master weights and AdamW state with bfloat16 forward/backward and float32 log-probs and loss; bf16-pure: bfloat16 weights and AdamW state, no float32 copy (less memory, but updates below bf16's resolution are lost: at lr 1e-6 most weights never move)")]
    public string Dtype { get; init; } = "float32";

    [Description("Memory budget (e.g. 24GiB, 512MiB, 16GB): before loading anything, the run's memory plan (bupo-hybrid plan) must fit in it, else it stops with the option that would make it fit; unset = no check. RAM on cpu, GPU memory on cuda")]
    public string? Memory { get; init; }

    [Description("CPU threads of the trainer (TorchSharp intra-op threads; 0 = its default). On a busy machine 1 can be much faster")]
    public int TrainThreads { get; init; }

    [Description("Seed of data order, sampling and mini-batch shuffling")]
    public long Seed { get; init; } = 1;

    // ------------------------------------------------------------------ sync, checkpoints
    [Description("Export the trained weights to the sampler every K steps")]
    public int SyncEvery { get; init; } = 1;

    [Description("GGUF type of the sampler's weights: Q8_0, F16, BF16, F32, Q4_K_M, Q6_K, ...")]
    public string RolloutQuant { get; init; } = "Q8_0";

    [Description("LoRA rank (0 = full fine-tuning): train adapters only and hot-swap them into the sampler without re-quantizing")]
    public int LoraRank { get; init; }

    [Description("LoRA alpha (scale alpha/rank; 0 = the rank, scale 1)")]
    public double LoraAlpha { get; init; }

    [Description("Block weights given adapters (default: attn_q, attn_k, attn_v, attn_qkv, attn_output, ffn_gate, ffn_up, ffn_down)")]
    public string[] LoraTargets { get; init; } = [];

    [Description("Also write TensorBoard event files (per step and per optimizer step) to OUTPUT/tensorboard")]
    public bool TensorBoard { get; init; } = true;

    [Description("Save a checkpoint every N steps (0 = only at the end and on Ctrl+C)")]
    public int CheckpointEvery { get; init; } = 50;

    [Description("Checkpoints kept (older ones are deleted; 0 = keep all)")]
    public int KeepCheckpoints { get; init; } = 2;

    [Description("Resume from a checkpoint folder, or 'latest' (the newest under --output)")]
    public string? Resume { get; init; }

    // ================================================================== resolution

    /// <summary>The config key / CLI option name (without dashes) of a property: kebab-case.</summary>
    public static string OptionName(string propertyName)
    {
        var sb = new StringBuilder();
        for (var i = 0; i < propertyName.Length; i++)
        {
            var c = propertyName[i];
            if (char.IsUpper(c) && i > 0) sb.Append('-');
            sb.Append(char.ToLowerInvariant(c));
        }
        return sb.ToString();
    }

    /// <summary>All settable settings with their names, types and descriptions, in declaration order.</summary>
    public static IReadOnlyList<OptionInfo> Infos { get; } = typeof(TrainOptions)
        .GetProperties(BindingFlags.Public | BindingFlags.Instance)
        .Where(p => p.CanWrite && p.GetCustomAttribute<DescriptionAttribute>() != null)
        .OrderBy(p => p.MetadataToken)
        .Select(p => new OptionInfo(OptionName(p.Name), p, p.GetCustomAttribute<DescriptionAttribute>()!.Description))
        .ToArray();

    /// <summary>The precision <see cref="Dtype"/> names (<see cref="ModelDevice.ParsePrecision"/>).</summary>
    public TrainPrecision Precision => ModelDevice.ParsePrecision(Dtype);

    /// <summary>The budget of <see cref="Memory"/> in bytes, or null when unset.</summary>
    /// <exception cref="BupoException">Not a memory size.</exception>
    public long? MemoryBytes => Memory is null ? null : ByteSize.Parse(Memory);

    /// <summary>The effective number of IPA steps.</summary>
    public int EffectiveBupoSteps => BupoSteps ?? (BupoLayer != null ? 30 : 0);

    /// <summary>These settings with defaults that depend on others filled in (bupo-steps).</summary>
    public TrainOptions Resolved() => this with { BupoSteps = EffectiveBupoSteps };

    /// <summary>The fixed BuPO block when <see cref="BupoLayer"/> is a number; null for GRPO or 'auto'.</summary>
    public int? FixedBupoLayer => BupoLayer != null && !IsAutoLayer ? int.Parse(BupoLayer, CultureInfo.InvariantCulture) : null;

    /// <summary>Whether the layer is chosen by the boundary-layer analysis.</summary>
    public bool IsAutoLayer => string.Equals(BupoLayer, "auto", StringComparison.OrdinalIgnoreCase);

    public LossAggregation Aggregation => LossAgg.ToLowerInvariant() switch
    {
        "token-mean" => LossAggregation.TokenMean,
        "seq-mean-token-mean" => LossAggregation.SeqMeanTokenMean,
        "seq-mean-token-sum-norm" => LossAggregation.SeqMeanTokenSumNorm,
        _ => throw new BupoException($"--loss-agg: '{LossAgg}' is not token-mean, seq-mean-token-mean or seq-mean-token-sum-norm"),
    };

    /// <summary>PPO clip settings for <see cref="PolicyLoss"/>.</summary>
    /// <summary>The trainer's settings these options give.</summary>
    public GrpoSettings Grpo => new()
    {
        Clip = ClipOptions, Temperature = Temperature, KlCoef = KlCoef, EntropyCoef = EntropyCoef, Tis = Tis, TisCap = TisCap,
        Beta1 = Beta1, Beta2 = Beta2, AdamEps = AdamEps, WeightDecay = WeightDecay, GradClip = GradClip,
        MiniBatchPrompts = MiniBatchPrompts, PpoEpochs = PpoEpochs, MicroBatchTokens = MicroBatchTokens, SharedPrefix = SharedPrefix,
        GradientCheckpointing = GradientCheckpointing, Seed = Seed,
    };

    public PpoClipOptions ClipOptions => new() { ClipLow = ClipLow, ClipHigh = ClipHigh, DualClip = DualClip, Aggregation = Aggregation, TokenSumNormalizer = MaxResponseTokens };

    /// <summary>
    /// Checks every value; throws a one-line <see cref="BupoException"/> naming the option. <paramref name="needDataset"/>:
    /// whether a dataset must be named (the library can be given prompts directly).
    /// </summary>
    public void Validate(bool needDataset = true)
    {
        if (string.IsNullOrWhiteSpace(Model)) throw new BupoException("--model: no model given");
        if (needDataset && string.IsNullOrWhiteSpace(Dataset)) throw new BupoException("--dataset: no training prompts given");
        if (Limit is <= 0) throw new BupoException($"--limit must be positive, got {Limit}");
        if (!PromptTemplate.Equals("auto", StringComparison.OrdinalIgnoreCase) && !PromptTemplates.Names.Contains(PromptTemplate.Trim().ToLowerInvariant().Replace('-', '_')))
            throw new BupoException($"--prompt-template: '{PromptTemplate}' is not auto, {string.Join(", ", PromptTemplates.Names)}");
        Positive(MaxPromptTokens, "max-prompt-tokens");
        if (Reward.ToLowerInvariant() is not ("math" or "command")) throw new BupoException($"--reward: '{Reward}' is not math or command");
        if (Reward.Equals("command", StringComparison.OrdinalIgnoreCase) && string.IsNullOrWhiteSpace(RewardCommand))
            throw new BupoException("--reward command needs --reward-command");
        if (string.IsNullOrWhiteSpace(Output)) throw new BupoException("--output: empty folder name");
        Positive(Steps, "steps");
        Positive(PromptsPerStep, "prompts-per-step");
        Positive(SamplesPerPrompt, "samples-per-prompt");
        if (!(Temperature > 0) || !double.IsFinite(Temperature)) throw new BupoException($"--temperature must be > 0 (the trainer divides logits by it), got {Temperature}");
        if (!(TopP > 0 && TopP <= 1)) throw new BupoException($"--top-p must be in (0, 1], got {TopP}");
        if (TopK < 0) throw new BupoException($"--top-k must be >= 0, got {TopK}");
        if (!(MinP >= 0 && MinP < 1)) throw new BupoException($"--min-p must be in [0, 1), got {MinP}");
        Positive(MaxResponseTokens, "max-response-tokens");
        if (Parallel is < 1 or > RolloutEngine.MaxParallel) throw new BupoException($"--parallel must be in [1, {RolloutEngine.MaxParallel}] (llama.cpp's limit on sequences), got {Parallel}");
        if (ContextSize < 0) throw new BupoException($"--context-size must be >= 0, got {ContextSize}");
        if (Threads < 0) throw new BupoException($"--threads must be >= 0, got {Threads}");
        if (TrainThreads < 0) throw new BupoException($"--train-threads must be >= 0, got {TrainThreads}");
        if (GpuLayers < -1) throw new BupoException($"--gpu-layers must be >= -1, got {GpuLayers}");
        if (OffloadSampler && !SamplerSleep) throw new BupoException("--offload-sampler needs --sampler-sleep (the model is unloaded while the sampler sleeps)");
        if (!(ClipLow >= 0 && ClipLow < 1)) throw new BupoException($"--clip-low must be in [0, 1), got {ClipLow}");
        if (!(ClipHigh >= 0) || !double.IsFinite(ClipHigh)) throw new BupoException($"--clip-high must be >= 0, got {ClipHigh}");
        if (!(DualClip == 0 || DualClip > 1) || !double.IsFinite(DualClip)) throw new BupoException($"--dual-clip must be 0 (off) or > 1, got {DualClip}");
        _ = Aggregation;
        NonNegative(KlCoef, "kl-coef");
        NonNegative(EntropyCoef, "entropy-coef");
        if (BupoLayer != null && !IsAutoLayer && (!int.TryParse(BupoLayer, NumberStyles.Integer, CultureInfo.InvariantCulture, out var k) || k < 0))
            throw new BupoException($"--bupo-layer: '{BupoLayer}' is not a block index (0-based) or 'auto'");
        if (BupoSteps is < 0) throw new BupoException($"--bupo-steps must be >= 0, got {BupoSteps}");
        if (BupoSteps is > 0 && BupoLayer == null) throw new BupoException("--bupo-steps needs --bupo-layer");
        Positive(AutoLayerPrompts, "auto-layer-prompts");
        Positive(AutoLayerMaxTokens, "auto-layer-max-tokens");
        if (!double.IsFinite(AutoLayerTau)) throw new BupoException($"--auto-layer-tau must be finite, got {AutoLayerTau}");
        if (!(TisCap >= 1) || !double.IsFinite(TisCap)) throw new BupoException($"--tis-cap must be >= 1, got {TisCap}");
        if (!(Lr >= 0) || !double.IsFinite(Lr)) throw new BupoException($"--lr must be >= 0, got {Lr}");
        if (!(Beta1 >= 0 && Beta1 < 1)) throw new BupoException($"--beta1 must be in [0, 1), got {Beta1}");
        if (!(Beta2 >= 0 && Beta2 < 1)) throw new BupoException($"--beta2 must be in [0, 1), got {Beta2}");
        if (!(AdamEps > 0)) throw new BupoException($"--adam-eps must be > 0, got {AdamEps}");
        NonNegative(WeightDecay, "weight-decay");
        if (WarmupSteps < 0) throw new BupoException($"--warmup-steps must be >= 0, got {WarmupSteps}");
        if (LrSchedule.ToLowerInvariant() is not ("constant" or "cosine")) throw new BupoException($"--lr-schedule: '{LrSchedule}' is not constant or cosine");
        if (!(MinLrRatio >= 0 && MinLrRatio <= 1)) throw new BupoException($"--min-lr-ratio must be in [0, 1], got {MinLrRatio}");
        NonNegative(GradClip, "grad-clip");
        Positive(MiniBatchPrompts, "mini-batch-prompts");
        Positive(PpoEpochs, "ppo-epochs");
        Positive(MicroBatchTokens, "micro-batch-tokens");
        Positive(SyncEvery, "sync-every");
        if (string.IsNullOrWhiteSpace(RolloutQuant)) throw new BupoException("--rollout-quant: empty type");
        if (LoraRank < 0) throw new BupoException($"--lora-rank must be >= 0, got {LoraRank}");
        NonNegative(LoraAlpha, "lora-alpha");
        var unknownTarget = LoraTargets.FirstOrDefault(t => !LoraSet.DefaultTargets.Contains(t));
        if (unknownTarget != null) throw new BupoException($"--lora-targets: '{unknownTarget}' is not one of {string.Join(", ", LoraSet.DefaultTargets)}");
        if (CheckpointEvery < 0) throw new BupoException($"--checkpoint-every must be >= 0, got {CheckpointEvery}");
        if (KeepCheckpoints < 0) throw new BupoException($"--keep-checkpoints must be >= 0, got {KeepCheckpoints}");
        _ = Precision; // names the accepted values when Dtype is none of them
        if (Memory != null) _ = MemoryBytes;
        if (!double.IsFinite(AccuracyThreshold)) throw new BupoException($"--accuracy-threshold must be finite, got {AccuracyThreshold}");
    }

    private static void Positive(int v, string name)
    {
        if (v <= 0) throw new BupoException($"--{name} must be positive, got {v}");
    }

    private static void NonNegative(double v, string name)
    {
        if (!(v >= 0) || !double.IsFinite(v)) throw new BupoException($"--{name} must be >= 0, got {v}");
    }
}

/// <summary>One setting of <see cref="TrainOptions"/>: its key (= CLI option name without dashes), property and help text.</summary>
public sealed record OptionInfo(string Name, PropertyInfo Property, string Description)
{
    public Type ValueType => Nullable.GetUnderlyingType(Property.PropertyType) ?? Property.PropertyType;
    public bool IsFlag => ValueType == typeof(bool);
    public bool IsList => ValueType == typeof(string[]);
}

/// <summary>
/// Resolves <see cref="TrainOptions"/>: defaults, then a JSON config file (keys are the CLI option names without dashes;
/// an unknown key is an error naming it), then explicit overrides (the CLI's), parsed and checked one by one.
/// </summary>
public static class TrainConfig
{
    private static readonly Dictionary<string, OptionInfo> ByName = TrainOptions.Infos.ToDictionary(i => i.Name, StringComparer.Ordinal);

    /// <summary>The key of a run's config.json that lists its resumes (history, not a setting: ignored when the file is read back as --config).</summary>
    public const string ResumesKey = "resumes";

    /// <summary>Applies a JSON config file's values onto <paramref name="options"/>.</summary>
    public static TrainOptions ApplyFile(TrainOptions options, string path)
    {
        if (!File.Exists(path)) throw new BupoException($"config file not found: {path}");
        string text;
        try { text = File.ReadAllText(path); }
        catch (IOException e) { throw new BupoException($"{path}: cannot read: {e.Message}"); }
        return ApplyJson(options, text, path);
    }

    /// <summary>Applies a JSON object's values (<paramref name="where"/> names it in errors).</summary>
    public static TrainOptions ApplyJson(TrainOptions options, string json, string where = "config")
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(json, new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true }); }
        catch (JsonException e) { throw new BupoException($"{where}: invalid JSON ({e.Message.ReplaceLineEndings(" ")})"); }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new BupoException($"{where}: expected a JSON object of settings");
            var boxed = (object)(options with { });
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                var key = prop.Name;
                // Accept the option spelled with its dashes too ("--lr").
                var name = key.TrimStart('-');
                if (name == ResumesKey) continue;
                if (!seen.Add(name)) throw new BupoException($"{where}: the key '{name}' appears twice (which one is meant?)");
                if (!ByName.TryGetValue(name, out var info))
                    throw new BupoException($"{where}: unknown config key '{key}'{Suggest(name)}");
                info.Property.SetValue(boxed, FromJson(info, prop.Value, where));
            }
            return (TrainOptions)boxed;
        }
    }

    /// <summary>Sets one setting from its CLI text (lists: all values).</summary>
    public static TrainOptions Set(TrainOptions options, string name, object? value)
    {
        if (!ByName.TryGetValue(name, out var info)) throw new BupoException($"unknown setting '{name}'{Suggest(name)}");
        var boxed = (object)(options with { });
        info.Property.SetValue(boxed, value switch
        {
            null => null,
            string s when !info.IsList => FromText(info, s),
            _ => value,
        });
        return (TrainOptions)boxed;
    }

    /// <summary>The resolved settings as an indented JSON object (the config-file format; null values included).</summary>
    public static string ToJson(TrainOptions options)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            foreach (var info in TrainOptions.Infos)
            {
                var v = info.Property.GetValue(options);
                w.WritePropertyName(info.Name);
                switch (v)
                {
                    case null: w.WriteNullValue(); break;
                    case string s: w.WriteStringValue(s); break;
                    case bool b: w.WriteBooleanValue(b); break;
                    case int i: w.WriteNumberValue(i); break;
                    case long l: w.WriteNumberValue(l); break;
                    case double d: w.WriteNumberValue(d); break;
                    case string[] a:
                        w.WriteStartArray();
                        foreach (var s in a) w.WriteStringValue(s);
                        w.WriteEndArray();
                        break;
                    default: throw new InvalidOperationException(info.Name);
                }
            }
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }

    private static string Suggest(string name)
    {
        var best = TrainOptions.Infos.Select(i => (i.Name, D: Distance(i.Name, name))).OrderBy(x => x.D).First();
        return best.D <= Math.Max(2, name.Length / 3) ? $" (did you mean '{best.Name}'?)" : "";
    }

    private static int Distance(string a, string b)
    {
        var d = new int[a.Length + 1, b.Length + 1];
        for (var i = 0; i <= a.Length; i++) d[i, 0] = i;
        for (var j = 0; j <= b.Length; j++) d[0, j] = j;
        for (var i = 1; i <= a.Length; i++)
            for (var j = 1; j <= b.Length; j++)
                d[i, j] = Math.Min(Math.Min(d[i - 1, j] + 1, d[i, j - 1] + 1), d[i - 1, j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
        return d[a.Length, b.Length];
    }

    private static object? FromJson(OptionInfo info, JsonElement v, string where)
    {
        var t = info.ValueType;
        var nullable = !info.Property.PropertyType.IsValueType || Nullable.GetUnderlyingType(info.Property.PropertyType) != null;
        if (v.ValueKind == JsonValueKind.Null)
        {
            if (nullable && !info.IsList) return null;
            throw new BupoException($"{where}: '{info.Name}' cannot be null");
        }
        try
        {
            if (t == typeof(string))
            {
                // A string setting may be written as a number (e.g. "bupo-layer": 5).
                return v.ValueKind switch
                {
                    JsonValueKind.String => v.GetString(),
                    JsonValueKind.Number => v.GetRawText(),
                    _ => throw new FormatException("expected a string"),
                };
            }
            if (t == typeof(bool))
            {
                if (v.ValueKind is JsonValueKind.True or JsonValueKind.False) return v.GetBoolean();
                throw new FormatException("expected true or false");
            }
            if (t == typeof(int))
            {
                if (v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var i)) return i;
                throw new FormatException("expected an integer");
            }
            if (t == typeof(long))
            {
                if (v.ValueKind == JsonValueKind.Number && v.TryGetInt64(out var l)) return l;
                throw new FormatException("expected an integer");
            }
            if (t == typeof(double))
            {
                if (v.ValueKind == JsonValueKind.Number) return v.GetDouble();
                throw new FormatException("expected a number");
            }
            if (t == typeof(string[]))
            {
                if (v.ValueKind == JsonValueKind.String) return new[] { v.GetString()! };
                if (v.ValueKind == JsonValueKind.Array && v.EnumerateArray().All(e => e.ValueKind == JsonValueKind.String))
                    return v.EnumerateArray().Select(e => e.GetString()!).ToArray();
                throw new FormatException("expected a list of strings");
            }
        }
        catch (FormatException e)
        {
            throw new BupoException($"{where}: '{info.Name}': {e.Message}, got {v.GetRawText()}");
        }
        throw new InvalidOperationException($"unsupported setting type {t}");
    }

    private static object? FromText(OptionInfo info, string s)
    {
        var t = info.ValueType;
        var inv = CultureInfo.InvariantCulture;
        if (t == typeof(string)) return s;
        if (t == typeof(int) && int.TryParse(s, NumberStyles.Integer, inv, out var i)) return i;
        if (t == typeof(long) && long.TryParse(s, NumberStyles.Integer, inv, out var l)) return l;
        if (t == typeof(double) && double.TryParse(s, NumberStyles.Float, inv, out var d)) return d;
        if (t == typeof(bool) && bool.TryParse(s, out var b)) return b;
        var what = t == typeof(double) ? "a number" : t == typeof(bool) ? "true or false" : "an integer";
        throw new BupoException($"--{info.Name}: '{s}' is not {what}");
    }
}
