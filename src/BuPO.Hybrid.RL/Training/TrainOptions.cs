using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using BuPO.Hybrid.Model;
using BuPO.Hybrid.Rollout;
using BuPO.Hybrid.RL.Algorithms;

namespace BuPO.Hybrid.RL.Training;

/// <summary>
/// Every setting of a training run. Each property is also a config-file key and a CLI option of <c>bupo-hybrid train</c>
/// under the same kebab-case name (<c>Lr</c> is <c>"lr"</c> and <c>--lr</c>, <c>BupoLayer</c> is <c>"bupo-layer"</c> and
/// <c>--bupo-layer</c>), declared with its help text in <see cref="TrainSettings"/>. Defaults are BuPO's reference
/// settings (BUPO_SPEC.md §4-6).
/// Resolve defaults &lt; config file &lt; CLI with <see cref="TrainConfig"/>; check with <see cref="Validate"/>.
/// </summary>
public sealed record TrainOptions
{
    // ------------------------------------------------------------------ model and data
    public string? Model { get; init; }

    public string? Dataset { get; init; }

    public string? Split { get; init; }

    public int? Limit { get; init; }

    public string? DataDir { get; init; }

    public string? Field { get; init; }

    public string? AnswerField { get; init; }

    public string PromptTemplate { get; init; } = "auto";

    public int MaxPromptTokens { get; init; } = 1024;

    public RewardKind Reward { get; init; } = RewardKind.Math;

    public string? RewardCommand { get; init; }

    public double AccuracyThreshold { get; init; } = 0.5;

    public string Output { get; init; } = "runs/bupo-train";

    // ------------------------------------------------------------------ rollouts
    public int Steps { get; init; } = 300;

    public int PromptsPerStep { get; init; } = 128;

    public int SamplesPerPrompt { get; init; } = 8;

    public double Temperature { get; init; } = 1.0;

    public double TopP { get; init; } = 1.0;

    public int TopK { get; init; }

    public double MinP { get; init; }

    public int MaxResponseTokens { get; init; } = 8192;

    public string[] Stop { get; init; } = [];

    public int Parallel { get; init; } = 64;

    public int ContextSize { get; init; }

    public int Threads { get; init; }

    public int GpuLayers { get; init; }

    public string? LlamaLibDir { get; init; }

    public bool SamplerSleep { get; init; } = true;

    public bool OffloadSampler { get; init; }

    // ------------------------------------------------------------------ algorithm
    public bool AdvantageStd { get; init; } = true;

    public double ClipLow { get; init; } = PpoClipOptions.Default.ClipLow;

    public double ClipHigh { get; init; } = PpoClipOptions.Default.ClipHigh;

    public double DualClip { get; init; } = PpoClipOptions.Default.DualClip;

    public LossAggregation LossAgg { get; init; } = PpoClipOptions.Default.Aggregation;

    public double KlCoef { get; init; }

    public double EntropyCoef { get; init; }

    public string? BupoLayer { get; init; }

    public int? BupoSteps { get; init; }

    public int AutoLayerPrompts { get; init; } = 16;

    public int AutoLayerMaxTokens { get; init; } = 256;

    public double AutoLayerTau { get; init; } = 0.05;

    public bool Tis { get; init; } = true;

    public double TisCap { get; init; } = 2.0;

    // ------------------------------------------------------------------ optimization
    public double Lr { get; init; } = 1e-6;

    public double Beta1 { get; init; } = 0.9;

    public double Beta2 { get; init; } = 0.999;

    public double AdamEps { get; init; } = 1e-8;

    public double WeightDecay { get; init; } = 0.01;

    public int WarmupSteps { get; init; }

    public LrScheduleShape LrSchedule { get; init; } = LrScheduleShape.Constant;

    public double MinLrRatio { get; init; }

    public double GradClip { get; init; } = 1.0;

    public int MiniBatchPrompts { get; init; } = 32;

    public int PpoEpochs { get; init; } = 1;

    public int MicroBatchTokens { get; init; } = 16384;

    public bool SharedPrefix { get; init; } = true;

    public bool GradientCheckpointing { get; init; }

    public string Device { get; init; } = "cpu";

    public TrainPrecision Dtype { get; init; } = TrainPrecision.Float32;

    public string? Memory { get; init; }

    public int TrainThreads { get; init; }

    public long Seed { get; init; } = 1;

    // ------------------------------------------------------------------ sync, checkpoints
    public int SyncEvery { get; init; } = 1;

    public string RolloutQuant { get; init; } = "Q8_0";

    public int LoraRank { get; init; }

    public double LoraAlpha { get; init; }

    public string[] LoraTargets { get; init; } = [];

    public bool TensorBoard { get; init; } = true;

    public int CheckpointEvery { get; init; } = 50;

    public int KeepCheckpoints { get; init; } = 2;

    public string? Resume { get; init; }

    // ================================================================== resolution

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

    /// <summary>The trainer's settings these options give.</summary>
    public GrpoSettings Grpo => new()
    {
        Clip = ClipOptions, Temperature = Temperature, KlCoef = KlCoef, EntropyCoef = EntropyCoef, Tis = Tis, TisCap = TisCap,
        Beta1 = Beta1, Beta2 = Beta2, AdamEps = AdamEps, WeightDecay = WeightDecay, GradClip = GradClip,
        MiniBatchPrompts = MiniBatchPrompts, PpoEpochs = PpoEpochs, MicroBatchTokens = MicroBatchTokens, SharedPrefix = SharedPrefix,
        GradientCheckpointing = GradientCheckpointing, Seed = Seed,
    };

    /// <summary>PPO clip settings for <see cref="PolicyLoss"/>.</summary>
    public PpoClipOptions ClipOptions => new() { ClipLow = ClipLow, ClipHigh = ClipHigh, DualClip = DualClip, Aggregation = LossAgg, TokenSumNormalizer = MaxResponseTokens };

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
        if (Reward == RewardKind.Command && string.IsNullOrWhiteSpace(RewardCommand))
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

/// <summary>Where a training run's rewards come from (<c>--reward</c>).</summary>
public enum RewardKind
{
    /// <summary>The last <c>\boxed{}</c> answer checked against the reference: 1 or 0 (<c>math</c>).</summary>
    Math,
    /// <summary>A shell command scoring JSON lines (<c>command</c>, with --reward-command).</summary>
    Command,
}

/// <summary>
/// Resolves <see cref="TrainOptions"/>: defaults, then a JSON config file (keys are the CLI option names without dashes;
/// an unknown key is an error naming it), then explicit overrides (the CLI's typed options), through <see cref="TrainSettings"/>.
/// </summary>
public static class TrainConfig
{
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
        ArgumentNullException.ThrowIfNull(options);
        JsonDocument doc;
        try { doc = JsonDocument.Parse(json, new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true }); }
        catch (JsonException e) { throw new BupoException($"{where}: invalid JSON ({e.Message.ReplaceLineEndings(" ")})"); }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new BupoException($"{where}: expected a JSON object of settings");
            var result = options;
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                var key = prop.Name;
                // Accept the option spelled with its dashes too ("--lr").
                var name = key.TrimStart('-');
                if (name == ResumesKey) continue;
                if (!seen.Add(name)) throw new BupoException($"{where}: the key '{name}' appears twice (which one is meant?)");
                var setting = TrainSettings.Find(name) ?? throw new BupoException($"{where}: unknown config key '{key}'{Suggest(name)}");
                result = setting.ReadJson(result, prop.Value, where);
            }
            return result;
        }
    }

    /// <summary>The resolved settings as an indented JSON object (the config-file format; null values included).</summary>
    public static string ToJson(TrainOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            foreach (var setting in TrainSettings.All)
            {
                w.WritePropertyName(setting.Name);
                setting.WriteJson(w, options);
            }
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }

    /// <summary>
    /// <paramref name="saved"/> (a checkpoint's settings) with each known setting's value written as <see cref="ToJson"/>
    /// writes it (choices by their canonical name: an older checkpoint's "bfloat16" is "bf16"), so it compares with the
    /// current settings value by value; keys it lacks stay absent, values that do not read stay as they are.
    /// </summary>
    public static JsonObject Canonical(JsonObject saved)
    {
        ArgumentNullException.ThrowIfNull(saved);
        var result = new JsonObject();
        foreach (var (name, value) in saved)
        {
            JsonNode? canonical = value?.DeepClone();
            if (TrainSettings.Find(name) is { } setting)
            {
                try
                {
                    using var doc = JsonDocument.Parse(value?.ToJsonString() ?? "null");
                    var one = setting.ReadJson(new TrainOptions(), doc.RootElement, "checkpoint");
                    using var ms = new MemoryStream();
                    using (var w = new Utf8JsonWriter(ms)) setting.WriteJson(w, one);
                    canonical = JsonNode.Parse(ms.ToArray());
                }
                catch (BupoException) { }
            }
            result[name] = canonical;
        }
        return result;
    }

    private static string Suggest(string name)
    {
        var best = TrainSettings.All.Select(s => (s.Name, D: Distance(s.Name, name))).OrderBy(x => x.D).First();
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
}
