using System.Text.Json;
using BuPO.Hybrid.Model;
using BuPO.Hybrid.RL.Algorithms;

namespace BuPO.Hybrid.RL.Training;

/// <summary>
/// Every setting of <see cref="TrainOptions"/>, each declared once: name, help text, getter and setter, JSON form; defaults
/// are the record's. <see cref="TrainConfig"/> reads and writes config files through these, and the CLI makes one typed
/// option of each (a test checks that every property of the record has exactly one).
/// </summary>
public static class TrainSettings
{
    /// <summary>All settings, in the order help lists them.</summary>
    public static IReadOnlyList<TrainSetting> All { get; } =
    [
        // model and data
        NullableText("model", "GGUF model to train (the trainer loads it in full precision; the sampler starts from it)",
            o => o.Model, (o, v) => o with { Model = v }),
        NullableText("dataset", "Training prompts: a known dataset name (deepmath5k, gsm8k, math500, ...) or a .jsonl/.txt file",
            o => o.Dataset, (o, v) => o with { Dataset = v }),
        NullableText("split", "Split of a known dataset (default: its usual one)",
            o => o.Split, (o, v) => o with { Split = v }),
        NullableInt("limit", "Use only the first N prompts of the dataset",
            o => o.Limit, (o, v) => o with { Limit = v }),
        NullableText("data-dir", "Folder holding the known datasets (<name>/<split>.jsonl)",
            o => o.DataDir, (o, v) => o with { DataDir = v }),
        NullableText("field", "JSONL field holding the problem (default: detected)",
            o => o.Field, (o, v) => o with { Field = v }),
        NullableText("answer-field", "JSONL field holding the reference answer (default: detected)",
            o => o.AnswerField, (o, v) => o with { AnswerField = v }),
        Text("prompt-template", "How a problem becomes the prompt (as eval): auto (qwen3_no_thinking for qwen3, chat with a chat template, else boxed), raw, boxed, chat, qwen3_no_thinking",
            o => o.PromptTemplate, (o, v) => o with { PromptTemplate = v }),
        Int("max-prompt-tokens", "Prompts longer than this many tokens are left-truncated",
            o => o.MaxPromptTokens, (o, v) => o with { MaxPromptTokens = v }),
        RewardChoice("reward", "Reward: math (last \\boxed{} answer vs the reference, 1/0) or command (--reward-command)",
            o => o.Reward, (o, v) => o with { Reward = v }),
        NullableText("reward-command", "Shell command computing rewards (JSON lines on stdin/stdout), for --reward command",
            o => o.RewardCommand, (o, v) => o with { RewardCommand = v }),
        Double("accuracy-threshold", "A response counts as correct (the accuracy metric) when its reward is at least this",
            o => o.AccuracyThreshold, (o, v) => o with { AccuracyThreshold = v }),
        Text("output", "Output folder: metrics.jsonl, metrics.csv, config.json, sampler/, checkpoints/",
            o => o.Output, (o, v) => o with { Output = v }),
        // rollouts
        Int("steps", "Training steps (one rollout batch and its updates per step)",
            o => o.Steps, (o, v) => o with { Steps = v }),
        Int("prompts-per-step", "Prompts sampled per step",
            o => o.PromptsPerStep, (o, v) => o with { PromptsPerStep = v }),
        Int("samples-per-prompt", "Responses per prompt (the GRPO group size)",
            o => o.SamplesPerPrompt, (o, v) => o with { SamplesPerPrompt = v }),
        Double("temperature", "Sampling temperature (the trainer's log-probs use the same temperature)",
            o => o.Temperature, (o, v) => o with { Temperature = v }),
        Double("top-p", "Top-p of the sampler (1 = off)",
            o => o.TopP, (o, v) => o with { TopP = v }),
        Int("top-k", "Top-k of the sampler (0 = off)",
            o => o.TopK, (o, v) => o with { TopK = v }),
        Double("min-p", "Min-p of the sampler (0 = off)",
            o => o.MinP, (o, v) => o with { MinP = v }),
        Int("max-response-tokens", "Most tokens generated per response",
            o => o.MaxResponseTokens, (o, v) => o with { MaxResponseTokens = v }),
        Texts("stop", "Stop strings (the response ends after the first one)",
            o => o.Stop, (o, v) => o with { Stop = v }),
        Int("parallel", "Sequences the sampler decodes together",
            o => o.Parallel, (o, v) => o with { Parallel = v }),
        Int("context-size", "Sampler KV cache size in tokens (0 = enough for --parallel sequences)",
            o => o.ContextSize, (o, v) => o with { ContextSize = v }),
        Int("threads", "CPU threads of the sampler (0 = all processors)",
            o => o.Threads, (o, v) => o with { Threads = v }),
        Int("gpu-layers", "Sampler layers offloaded to the GPU (-1 = all; needs a GPU build of llama.cpp)",
            o => o.GpuLayers, (o, v) => o with { GpuLayers = v }),
        NullableText("llama-lib-dir", "Folder of the llama.cpp libraries (default: $BUPO_LLAMA_LIB_DIR, then the bundled build)",
            o => o.LlamaLibDir, (o, v) => o with { LlamaLibDir = v }),
        Bool("sampler-sleep", "Free the sampler's KV cache while the trainer updates (it is rebuilt for the next rollout)",
            o => o.SamplerSleep, (o, v) => o with { SamplerSleep = v }),
        Bool("offload-sampler", "Also unload the sampler's model while the trainer updates (loaded again for the next rollout; needs --sampler-sleep)",
            o => o.OffloadSampler, (o, v) => o with { OffloadSampler = v }),
        // algorithm
        Bool("advantage-std", "Divide group-centered rewards by the group's std (GRPO); false: advantages are R - mean",
            o => o.AdvantageStd, (o, v) => o with { AdvantageStd = v }),
        Double("clip-low", "PPO clip range below 1 (ratio >= 1 - clip-low)",
            o => o.ClipLow, (o, v) => o with { ClipLow = v }),
        Double("clip-high", "PPO clip range above 1 (ratio <= 1 + clip-high)",
            o => o.ClipHigh, (o, v) => o with { ClipHigh = v }),
        Double("dual-clip", "Dual-clip constant c for negative advantages (0 = off)",
            o => o.DualClip, (o, v) => o with { DualClip = v }),
        LossAggregationChoice("loss-agg", "Loss aggregation: token-mean (over the mini-batch's response tokens), seq-mean-token-mean, or seq-mean-token-sum-norm (Dr. GRPO: token sums over the constant max-response-tokens)",
            o => o.LossAgg, (o, v) => o with { LossAgg = v }),
        Double("kl-coef", "Coefficient of the k3 KL-to-reference penalty (0 = off; the reference is the initial model)",
            o => o.KlCoef, (o, v) => o with { KlCoef = v }),
        Double("entropy-coef", "Coefficient of the entropy bonus (0 = off)",
            o => o.EntropyCoef, (o, v) => o with { EntropyCoef = v }),
        NullableText("bupo-layer", "BuPO: block k (0-based) whose internal policy is optimized first, or 'auto' (boundary-layer analysis); unset = GRPO",
            o => o.BupoLayer, (o, v) => o with { BupoLayer = v }),
        NullableInt("bupo-steps", "BuPO: steps (1-based, inclusive) that optimize block k's internal policy before the full policy (default 30 with --bupo-layer, else 0)",
            o => o.BupoSteps, (o, v) => o with { BupoSteps = v }),
        Int("auto-layer-prompts", "Prompts sampled for --bupo-layer auto's analysis",
            o => o.AutoLayerPrompts, (o, v) => o with { AutoLayerPrompts = v }),
        Int("auto-layer-max-tokens", "Response tokens per prompt for --bupo-layer auto's analysis",
            o => o.AutoLayerMaxTokens, (o, v) => o with { AutoLayerMaxTokens = v }),
        Double("auto-layer-tau", "Threshold tau (nats) of the boundary-layer rule: blocks with dH_FFN > tau explore",
            o => o.AutoLayerTau, (o, v) => o with { AutoLayerTau = v }),
        Bool("tis", "Truncated importance sampling against the quantized sampler: weight min(pi_trainer/pi_sampler, C) per token",
            o => o.Tis, (o, v) => o with { Tis = v }),
        Double("tis-cap", "Cap C of the truncated importance weight",
            o => o.TisCap, (o, v) => o with { TisCap = v }),
        // optimization
        Double("lr", "AdamW learning rate",
            o => o.Lr, (o, v) => o with { Lr = v }),
        Double("beta1", "AdamW beta1",
            o => o.Beta1, (o, v) => o with { Beta1 = v }),
        Double("beta2", "AdamW beta2",
            o => o.Beta2, (o, v) => o with { Beta2 = v }),
        Double("adam-eps", "AdamW epsilon",
            o => o.AdamEps, (o, v) => o with { AdamEps = v }),
        Double("weight-decay", "AdamW decoupled weight decay",
            o => o.WeightDecay, (o, v) => o with { WeightDecay = v }),
        Int("warmup-steps", "Linear warm-up steps of the learning rate",
            o => o.WarmupSteps, (o, v) => o with { WarmupSteps = v }),
        LrScheduleChoice("lr-schedule", "Learning-rate schedule after warm-up: constant or cosine",
            o => o.LrSchedule, (o, v) => o with { LrSchedule = v }),
        Double("min-lr-ratio", "Cosine schedule: final learning rate as a fraction of --lr",
            o => o.MinLrRatio, (o, v) => o with { MinLrRatio = v }),
        Double("grad-clip", "Gradient-norm clip (0 = off); a non-finite gradient norm always skips the optimizer step",
            o => o.GradClip, (o, v) => o with { GradClip = v }),
        Int("mini-batch-prompts", "Prompts per mini-batch (one optimizer step each)",
            o => o.MiniBatchPrompts, (o, v) => o with { MiniBatchPrompts = v }),
        Int("ppo-epochs", "Passes over each rollout batch",
            o => o.PpoEpochs, (o, v) => o with { PpoEpochs = v }),
        Int("micro-batch-tokens", "Token budget of a micro-batch (padded sequence tokens); gradients accumulate over micro-batches",
            o => o.MicroBatchTokens, (o, v) => o with { MicroBatchTokens = v }),
        Bool("shared-prefix", "Shared-prefix training forward: the responses of a prompt share one forward of the prompt (same log-probs and gradients as one sequence each, fewer tokens)",
            o => o.SharedPrefix, (o, v) => o with { SharedPrefix = v }),
        Bool("gradient-checkpointing", "Recompute blocks in backward instead of keeping activations",
            o => o.GradientCheckpointing, (o, v) => o with { GradientCheckpointing = v }),
        Text("device", "Trainer device: cpu, cuda, cuda:N",
            o => o.Device, (o, v) => o with { Device = v }),
        PrecisionChoice("dtype", "Trainer precision: float32; bf16 (or bfloat16): mixed precision, float32 master weights and AdamW state with bfloat16 forward/backward and float32 log-probs and loss; bf16-pure: bfloat16 weights and AdamW state, no float32 copy (less memory, but updates below bf16's resolution are lost: at lr 1e-6 most weights never move)",
            o => o.Dtype, (o, v) => o with { Dtype = v }),
        NullableText("memory", "Memory budget (e.g. 24GiB, 512MiB, 16GB): before loading anything, the run's memory plan (bupo-hybrid plan) must fit in it, else it stops with the option that would make it fit; unset = no check. RAM on cpu, GPU memory on cuda",
            o => o.Memory, (o, v) => o with { Memory = v }),
        Int("train-threads", "CPU threads of the trainer (TorchSharp intra-op threads; 0 = its default). On a busy machine 1 can be much faster",
            o => o.TrainThreads, (o, v) => o with { TrainThreads = v }),
        Long("seed", "Seed of data order, sampling and mini-batch shuffling",
            o => o.Seed, (o, v) => o with { Seed = v }),
        // sync, checkpoints
        Int("sync-every", "Export the trained weights to the sampler every K steps",
            o => o.SyncEvery, (o, v) => o with { SyncEvery = v }),
        Text("rollout-quant", "GGUF type of the sampler's weights: Q8_0, F16, BF16, F32, Q4_K_M, Q6_K, ...",
            o => o.RolloutQuant, (o, v) => o with { RolloutQuant = v }),
        Int("lora-rank", "LoRA rank (0 = full fine-tuning): train adapters only and hot-swap them into the sampler without re-quantizing",
            o => o.LoraRank, (o, v) => o with { LoraRank = v }),
        Double("lora-alpha", "LoRA alpha (scale alpha/rank; 0 = the rank, scale 1)",
            o => o.LoraAlpha, (o, v) => o with { LoraAlpha = v }),
        Texts("lora-targets", "Block weights given adapters (default: attn_q, attn_k, attn_v, attn_qkv, attn_output, ffn_gate, ffn_up, ffn_down)",
            o => o.LoraTargets, (o, v) => o with { LoraTargets = v }),
        Bool("tensor-board", "Also write TensorBoard event files (per step and per optimizer step) to OUTPUT/tensorboard",
            o => o.TensorBoard, (o, v) => o with { TensorBoard = v }),
        Int("checkpoint-every", "Save a checkpoint every N steps (0 = only at the end and on Ctrl+C)",
            o => o.CheckpointEvery, (o, v) => o with { CheckpointEvery = v }),
        Int("keep-checkpoints", "Checkpoints kept (older ones are deleted; 0 = keep all)",
            o => o.KeepCheckpoints, (o, v) => o with { KeepCheckpoints = v }),
        NullableText("resume", "Resume from a checkpoint folder, or 'latest' (the newest under --output)",
            o => o.Resume, (o, v) => o with { Resume = v }),
    ];

    private static readonly Dictionary<string, TrainSetting> ByName = All.ToDictionary(s => s.Name, StringComparer.Ordinal);

    /// <summary>The setting of a name (without dashes), or null.</summary>
    public static TrainSetting? Find(string name) => ByName.GetValueOrDefault(name);

    // ------------------------------------------------------------------ one factory per value type

    private static TrainSetting<int> Int(string name, string description, Func<TrainOptions, int> get, Func<TrainOptions, int, TrainOptions> set) =>
        new(name, description, get, set, SettingJson.Int, (w, v) => w.WriteNumberValue(v), v => SettingJson.Invariant(v));

    private static TrainSetting<int?> NullableInt(string name, string description, Func<TrainOptions, int?> get, Func<TrainOptions, int?, TrainOptions> set) =>
        new(name, description, get, set, SettingJson.NullableInt, SettingJson.Write, v => v is { } i ? SettingJson.Invariant(i) : null);

    private static TrainSetting<long> Long(string name, string description, Func<TrainOptions, long> get, Func<TrainOptions, long, TrainOptions> set) =>
        new(name, description, get, set, SettingJson.Long, (w, v) => w.WriteNumberValue(v), v => SettingJson.Invariant(v));

    private static TrainSetting<double> Double(string name, string description, Func<TrainOptions, double> get, Func<TrainOptions, double, TrainOptions> set) =>
        new(name, description, get, set, SettingJson.Double, (w, v) => w.WriteNumberValue(v), v => SettingJson.Invariant(v));

    private static TrainSetting<bool> Bool(string name, string description, Func<TrainOptions, bool> get, Func<TrainOptions, bool, TrainOptions> set) =>
        new(name, description, get, set, SettingJson.Bool, (w, v) => w.WriteBooleanValue(v), v => v ? "true" : "false");

    private static TrainSetting<string> Text(string name, string description, Func<TrainOptions, string> get, Func<TrainOptions, string, TrainOptions> set) =>
        new(name, description, get, set, SettingJson.Text, (w, v) => w.WriteStringValue(v), v => v.Length == 0 ? null : v);

    private static TrainSetting<string?> NullableText(string name, string description, Func<TrainOptions, string?> get, Func<TrainOptions, string?, TrainOptions> set) =>
        new(name, description, get, set, SettingJson.NullableText, SettingJson.Write, v => string.IsNullOrEmpty(v) ? null : v);

    private static TrainSetting<string[]> Texts(string name, string description, Func<TrainOptions, string[]> get, Func<TrainOptions, string[], TrainOptions> set) =>
        new(name, description, get, set, SettingJson.Texts, SettingJson.Write, _ => null);

    private static TrainSetting<T> Choice<T>(string name, string description, Func<TrainOptions, T> get, Func<TrainOptions, T, TrainOptions> set, SettingChoices<T> choices) =>
        new(name, description, get, set, v => SettingJson.Choice(v, choices), (w, v) => w.WriteStringValue(choices.Name(v)), choices.Name, choices);

    private static TrainSetting<TrainPrecision> PrecisionChoice(string name, string description, Func<TrainOptions, TrainPrecision> get, Func<TrainOptions, TrainPrecision, TrainOptions> set) =>
        Choice(name, description, get, set, new SettingChoices<TrainPrecision>(
            Enum.GetValues<TrainPrecision>().Select(ModelDevice.PrecisionName).ToArray(), ModelDevice.TryParsePrecision, ModelDevice.PrecisionName));

    private static TrainSetting<LossAggregation> LossAggregationChoice(string name, string description, Func<TrainOptions, LossAggregation> get, Func<TrainOptions, LossAggregation, TrainOptions> set) =>
        Choice(name, description, get, set, Named<LossAggregation>("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"));

    private static TrainSetting<RewardKind> RewardChoice(string name, string description, Func<TrainOptions, RewardKind> get, Func<TrainOptions, RewardKind, TrainOptions> set) =>
        Choice(name, description, get, set, Named<RewardKind>("math", "command"));

    private static TrainSetting<LrScheduleShape> LrScheduleChoice(string name, string description, Func<TrainOptions, LrScheduleShape> get, Func<TrainOptions, LrScheduleShape, TrainOptions> set) =>
        Choice(name, description, get, set, Named<LrScheduleShape>("constant", "cosine"));

    /// <summary>Choices named by <paramref name="names"/>, one per value of <typeparamref name="T"/> in declaration order (case-insensitive).</summary>
    private static SettingChoices<T> Named<T>(params string[] names) where T : struct, Enum
    {
        var values = Enum.GetValues<T>();
        if (values.Length != names.Length) throw new InvalidOperationException($"{typeof(T).Name}: {values.Length} values, {names.Length} names");
        return new SettingChoices<T>(names, (string text, out T value) =>
        {
            var i = Array.IndexOf(names, text.Trim().ToLowerInvariant());
            value = i < 0 ? default : values[i];
            return i >= 0;
        }, v => names[Array.IndexOf(values, v)]);
    }
}
