using System.Globalization;
using BuPO.Hybrid.Gguf;
using BuPO.Hybrid.Model;
using BuPO.Hybrid.RL.Algorithms;

namespace BuPO.Hybrid.RL.Training;

/// <summary>Where a memory plan's budget lives: host RAM (cpu) or the GPU's memory (cuda).</summary>
public enum MemoryDevice
{
    /// <summary>Everything in host RAM; the plan is the process's peak resident set.</summary>
    Cpu,
    /// <summary>The trainer on the GPU, llama.cpp there for its offloaded layers; the plan is GPU memory.</summary>
    Cuda,
}

/// <summary>One line of a <see cref="MemoryPlan"/>.</summary>
public enum MemoryPart
{
    /// <summary>The .NET runtime, libtorch and llama.cpp libraries, the CLI's managed heap (CPU), or the CUDA contexts (GPU).</summary>
    ProcessOverhead,
    /// <summary>The trainer's parameters in their stored type (float32, or bfloat16 for bf16-pure).</summary>
    Weights,
    /// <summary>bf16 mixed precision: the float32 masters are the parameters; this is the bf16 copies cast per use and kept for backward.</summary>
    ComputeCopies,
    /// <summary>AdamW's exp_avg and exp_avg_sq for every trained parameter.</summary>
    AdamWState,
    /// <summary>The .grad of every trained tensor (LoRA: the adapted weights' full dL/dW before it becomes dL/dA, dL/dB, plus the adapters').</summary>
    Gradients,
    /// <summary>Tensors autograd keeps for backward over one micro-batch, plus backward's working set.</summary>
    Activations,
    /// <summary>The chunked LM head: per-chunk logits buffers and the dense [vocab x d] head gradient.</summary>
    LmHead,
    /// <summary>LoRA: A and B, their gradients and AdamW state, and the frozen base copy W0 of each adapted weight.</summary>
    Lora,
    /// <summary>The frozen KL reference model (--kl-coef &gt; 0).</summary>
    KlReference,
    /// <summary>llama.cpp's model weights (the larger of the start model and the synced --rollout-quant one).</summary>
    SamplerModel,
    /// <summary>llama.cpp's KV cache for the rollout slots.</summary>
    KvCache,
    /// <summary>llama.cpp's logits and compute buffers.</summary>
    SamplerBuffers,
    /// <summary>Weight sync: the new sampler model loaded while the old one (and its context) still lives.</summary>
    SyncReload,
    /// <summary>CPU only: copies the GC and malloc hand back late (GGUF files read into memory, float copies at load, sync
    /// and checkpoint), calibrated against measured peaks.</summary>
    TransientCopies,
}

/// <summary>The phase of a training step a peak belongs to.</summary>
public enum PlanPhase
{
    /// <summary>Rollouts: the trainer's weights and AdamW state beside llama.cpp's model, KV cache and buffers.</summary>
    Rollout,
    /// <summary>Forward and backward of a micro-batch: weights, AdamW state, gradients, activations, head, and whatever of
    /// the sampler is not asleep (--sampler-sleep frees its KV cache, --offload-sampler its model too).</summary>
    Update,
    /// <summary>Weight sync: gradients freed, a second sampler model loading beside the first.</summary>
    WeightSync,
}

/// <summary>One line of the plan: what it is, its bytes, the phases it is resident in and how it was computed.</summary>
/// <param name="Part">What the bytes are.</param>
/// <param name="Bytes">Bytes counted in the plan (0: not present in this configuration).</param>
/// <param name="Phases">The phases in which these bytes are resident.</param>
/// <param name="Detail">How the number was computed, in words (shapes, counts, types).</param>
public sealed record MemoryItem(MemoryPart Part, long Bytes, IReadOnlySet<PlanPhase> Phases, string Detail);

/// <summary>An option change that makes a plan fit, with the peak it gives.</summary>
/// <param name="Options">The option(s) as a user types them (e.g. "--gradient-checkpointing --lora-rank 16").</param>
/// <param name="PeakBytes">The plan's peak with them.</param>
public sealed record MemoryAdvice(string Options, long PeakBytes);

/// <summary>
/// The shape of a model as the plan needs it: its hyper-parameters and every tensor's ggml shape and stored type. Read
/// from a GGUF header (<see cref="FromGguf(GgufFile)"/>: no weights are read) or made from a random-model spec.
/// </summary>
/// <param name="Name">A label (the file name, or "random qwen3-4b").</param>
/// <param name="Config">The hyper-parameters.</param>
/// <param name="Tensors">Every tensor: GGUF name, ggml shape (Shape[0] contiguous) and stored type.</param>
public sealed record ModelShape(string Name, TransformerConfig Config, IReadOnlyList<(string Name, long[] Shape, GgmlType Type)> Tensors)
{
    /// <summary>The shape of an open GGUF (checked by <see cref="TransformerConfig.FromGguf(GgufFile)"/>).</summary>
    public static ModelShape FromGguf(GgufFile file)
    {
        ArgumentNullException.ThrowIfNull(file);
        var config = TransformerConfig.FromGguf(file);
        return new ModelShape(Path.GetFileName(file.Path), config, file.Tensors.Select(t => (t.Name, t.Shape, t.Type)).ToArray());
    }

    /// <summary>The shape of a GGUF file (its header only is read for files over <see cref="GgufFile.InMemoryThreshold"/>).</summary>
    public static ModelShape FromGguf(string path)
    {
        using var file = GgufFile.Open(path);
        return FromGguf(file);
    }

    /// <summary>The shape <see cref="RandomGgufModel"/> would write for <paramref name="spec"/> with a vocabulary of <paramref name="vocabSize"/>.</summary>
    public static ModelShape FromSpec(RandomModelSpec spec, int vocabSize)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var tensors = RandomGgufModel.Layout(spec, vocabSize)
            .Select(t => (t.Name, t.Shape, t.Shape.Length == 1 ? GgmlType.F32 : spec.TensorType)).ToArray();
        var config = new TransformerConfig
        {
            Architecture = spec.Architecture, LayerCount = spec.Layers, EmbeddingLength = spec.Embedding, HeadCount = spec.Heads,
            HeadCountKv = spec.KvHeads, HeadDim = spec.EffectiveHeadDim, HeadDimV = spec.EffectiveHeadDim, FeedForwardLength = spec.FeedForward,
            VocabSize = vocabSize, RmsEps = spec.RmsEps, TiedEmbeddings = spec.TiedEmbeddings, QkvBias = spec.Architecture == "qwen2",
            QkNorm = spec.Architecture == "qwen3", Rope = spec.Architecture == "llama" ? RopeStyle.Norm : RopeStyle.Neox,
        };
        return new ModelShape(spec.Name, config, tensors);
    }

    /// <summary>Elements of the tensors the trainer holds as parameters (all but rope_freqs).</summary>
    public long ParameterCount => Trained.Sum(t => Elements(t.Shape));

    internal IEnumerable<(string Name, long[] Shape, GgmlType Type)> Trained => Tensors.Where(t => t.Name != "rope_freqs.weight");

    internal static long Elements(long[] shape) => shape.Aggregate(1L, (a, b) => a * b);
}

/// <summary>
/// What a training run holds in memory at its peak, computed from the model's shape and the run's settings, without
/// loading anything. Each <see cref="MemoryItem"/> names its formula. The trainer and llama.cpp live in one process, so on
/// the CPU the plan is the process's peak resident set (checked against VmHWM by the tests, within 15%, on stories260K and
/// a random qwen3); on CUDA it is GPU memory, with llama.cpp's share counted for its offloaded layers (--gpu-layers).
/// What the numbers assume: activations are counted tensor by tensor from what autograd saves in this trainer's block
/// (fused scaled-dot-product attention, i.e. no [heads x T x T] matrix); the token count of a micro-batch is the budget
/// the settings allow (--max-prompt-tokens and --max-response-tokens at their full length); the process overhead is the
/// one measured on the CPU (a CUDA context is an estimate until a GPU run measures it).
/// </summary>
public sealed record MemoryPlan
{
    /// <summary>Peak resident set of a training run whose model and batch are negligible (stories260K, 2 steps), measured on
    /// Linux x64 with the bundled CPU libtorch and llama.cpp: the .NET runtime (~55 MiB: `inspect`'s peak), llama.cpp's
    /// libraries (~7 MiB more: `generate`), libtorch and the trainer's managed code and heap (the rest).</summary>
    public const long CpuProcessOverhead = 222L << 20;

    /// <summary>
    /// CPU peaks grow with the model beyond the parts above: a 12.6M-parameter random qwen3 (2 steps, small batch) peaked
    /// 200-350 MiB above their sum, run to run, with a managed-heap limit and with malloc's mmap threshold fixed alike, so
    /// neither the GC nor malloc's trimming alone explains it. This multiple of the float32 weights (the middle of those
    /// runs) stands for it until the cause is pinned down; it was measured on that one size only.
    /// </summary>
    public const double CpuTransientCopiesPerWeightByte = 5.0;

    /// <summary>GPU memory of the CUDA context libtorch creates (kernels, cuBLAS workspace) and llama.cpp's share of it: an
    /// estimate (not yet measured here: no GPU run has been made).</summary>
    public const long CudaContextOverhead = 600L << 20;

    /// <summary>The rows of one LM-head chunk (<see cref="InternalPolicyHead.ChunkSize"/>'s default, what the trainer uses).</summary>
    public const int HeadChunkRows = 1024;

    /// <summary>llama.cpp's n_ubatch as the rollout engine sets it.</summary>
    public const int SamplerUBatch = 512;

    /// <summary>The model planned for.</summary>
    public required ModelShape Model { get; init; }
    /// <summary>The settings planned for.</summary>
    public required TrainOptions Options { get; init; }
    /// <summary>Whose memory the plan is.</summary>
    public required MemoryDevice Device { get; init; }
    /// <summary>Every line, in display order.</summary>
    public required IReadOnlyList<MemoryItem> Items { get; init; }
    /// <summary>Tokens of one micro-batch (the activations' T).</summary>
    public required long MicroBatchTokens { get; init; }
    /// <summary>Activations of one micro-batch with gradient checkpointing off and on.</summary>
    public required (long Without, long With) ActivationsByCheckpointing { get; init; }
    /// <summary>Parameters the optimizer updates (LoRA: the adapters only).</summary>
    public required long TrainedParameters { get; init; }

    /// <summary>The bytes resident in <paramref name="phase"/>.</summary>
    public long PhaseBytes(PlanPhase phase) => Items.Where(i => i.Phases.Contains(phase)).Sum(i => i.Bytes);

    /// <summary>The phase with the most bytes resident.</summary>
    public PlanPhase PeakPhase => Enum.GetValues<PlanPhase>().MaxBy(PhaseBytes);

    /// <summary>The phase as the plan's text names it: rollout, update, weight sync.</summary>
    public static string PhaseName(PlanPhase phase) => phase switch
    {
        PlanPhase.Rollout => "rollout",
        PlanPhase.Update => "update",
        _ => "weight sync",
    };

    /// <summary>The plan: the most bytes resident at once.</summary>
    public long PeakBytes => PhaseBytes(PeakPhase);

    /// <summary>The bytes of one part (0 when absent).</summary>
    public long this[MemoryPart part] => Items.Where(i => i.Part == part).Sum(i => i.Bytes);

    /// <summary>Computes the plan of <paramref name="options"/> (validated here) on <paramref name="model"/>.</summary>
    /// <exception cref="BupoException">Invalid settings (the same one-line errors as train's).</exception>
    public static MemoryPlan Compute(ModelShape model, TrainOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        var o = options.Resolved();
        var device = DeviceOf(o.Device);
        var precision = o.Dtype;
        var c = model.Config;
        var all = Enum.GetValues<PlanPhase>().ToHashSet();
        var update = new[] { PlanPhase.Update }.ToHashSet();
        var sync = new[] { PlanPhase.WeightSync }.ToHashSet();
        // The sampler sleeps through the update (TrainingRun): its context goes before it, and with --offload-sampler the
        // model too; a weight sync then finds no context (the reload frees it anyway) and only the model of the rollouts.
        var samplerModelPhases = o.SamplerSleep && o.OffloadSampler ? new[] { PlanPhase.Rollout, PlanPhase.WeightSync }.ToHashSet() : all;
        var contextPhases = o.SamplerSleep ? new[] { PlanPhase.Rollout }.ToHashSet() : all;
        var inv = CultureInfo.InvariantCulture;
        var items = new List<MemoryItem>();
        long p = model.ParameterCount;
        int paramSize = precision == TrainPrecision.BFloat16Pure ? 2 : 4;
        int computeSize = precision == TrainPrecision.Float32 ? 4 : 2;
        var paramType = precision == TrainPrecision.BFloat16Pure ? "bfloat16" : "float32";

        // ---- process
        items.Add(device == MemoryDevice.Cpu
            ? new MemoryItem(MemoryPart.ProcessOverhead, CpuProcessOverhead, all, ".NET runtime, libtorch, llama.cpp libraries, managed heap: measured (peak RSS of a stories260K run)")
            : new MemoryItem(MemoryPart.ProcessOverhead, CudaContextOverhead, all, "CUDA context of libtorch and llama.cpp: an estimate, not measured"));

        // ---- trainer weights
        items.Add(new MemoryItem(MemoryPart.Weights, p * paramSize, all, precision switch
        {
            TrainPrecision.BFloat16Mixed => $"{p.ToString("N0", inv)} parameters x 4 B: the float32 master weights (--dtype bf16 keeps them as the parameters)",
            TrainPrecision.BFloat16Pure => $"{p.ToString("N0", inv)} parameters x 2 B bfloat16, no float32 master copy (bf16-pure)",
            _ => $"{p.ToString("N0", inv)} parameters x 4 B float32 (they are the masters: no separate copy)",
        }));

        // Linear weights are cast per use under mixed precision and F.linear keeps its (bf16) weight for backward: with
        // every block's forward kept, every copy lives until backward; checkpointed blocks keep none but the one recomputed.
        var blockElems = model.Trained.Where(t => t.Name.StartsWith("blk.", StringComparison.Ordinal)).Sum(t => ModelShape.Elements(t.Shape));
        var unembedElems = (long)c.VocabSize * c.EmbeddingLength;
        if (precision == TrainPrecision.BFloat16Mixed)
        {
            var copies = o.GradientCheckpointing ? blockElems / Math.Max(1, c.LayerCount) + unembedElems : blockElems + unembedElems;
            items.Add(new MemoryItem(MemoryPart.ComputeCopies, copies * 2, update, o.GradientCheckpointing
                ? "bf16 copies of one block's weights (the one recomputed) and of the unembedding, 2 B each"
                : "bf16 copies of every block weight and of the unembedding, cast per use and kept for backward, 2 B each"));
        }

        // ---- what the optimizer updates
        var lora = o.LoraRank > 0;
        var targets = o.LoraTargets.Length > 0 ? o.LoraTargets : LoraSet.DefaultTargets;
        var adapted = lora ? model.Trained.Where(t => IsAdapted(t.Name, t.Shape, targets)).ToArray() : [];
        long adaptedElems = adapted.Sum(t => ModelShape.Elements(t.Shape));
        long loraElems = adapted.Sum(t => (long)o.LoraRank * (t.Shape[0] + t.Shape[1]));
        if (lora && adapted.Length == 0)
            throw new BupoException($"--lora-targets {string.Join(",", targets)}: no weight of {model.Name} matches");
        foreach (var t in adapted)
            if (o.LoraRank > Math.Min(t.Shape[0], t.Shape[1]))
                throw new BupoException($"--lora-rank {o.LoraRank} exceeds the dimensions of '{t.Name}' ([{t.Shape[1]}, {t.Shape[0]}])");
        var trained = lora ? loraElems : p;
        items.Add(new MemoryItem(MemoryPart.AdamWState, lora ? 0 : 2 * p * paramSize, all, lora
            ? "none for the base weights (LoRA: the adapters' state is under LoRA)"
            : $"exp_avg + exp_avg_sq: 2 x {p.ToString("N0", inv)} x {paramSize} B"));
        items.Add(new MemoryItem(MemoryPart.Gradients, (lora ? adaptedElems : p) * paramSize, update, lora
            ? $"dL/dW of the {adapted.Length} adapted weights ({adaptedElems.ToString("N0", inv)} elements x {paramSize} B): this LoRA takes the full weight gradient and turns it into dL/dA, dL/dB after backward"
            : $"{p.ToString("N0", inv)} x {paramSize} B ({paramType}, as the parameters)"));

        // ---- activations
        var tokens = MicroBatchTokenCount(o);
        var perToken = ActivationBytesPerTokenPerBlock(c, computeSize);
        var saved = (long)c.EmbeddingLength * computeSize; // a checkpointed block keeps only its input
        var head = 4L * c.EmbeddingLength * 4; // final norm, selected hidden rows, log-probs (float32)
        var without = tokens * ((c.LayerCount + 1) * perToken + head);
        var with = tokens * (c.LayerCount * saved + 2 * perToken + head);
        items.Add(new MemoryItem(MemoryPart.Activations, o.GradientCheckpointing ? with : without, update, string.Format(inv,
            "{0:N0} tokens x {1} ({2:N0} B per token per block, {3}); the other setting: {4}",
            tokens, o.GradientCheckpointing ? $"({c.LayerCount} block inputs x {saved} B + 2 blocks recomputed)" : $"({c.LayerCount} blocks + backward's working set)",
            perToken, computeSize == 2 ? "bf16 with float32 norm statistics" : "float32",
            o.GradientCheckpointing ? $"{ByteSize.Format(without)} without --gradient-checkpointing" : $"{ByteSize.Format(with)} with --gradient-checkpointing")));

        // ---- LM head: logits of one chunk of rows in float32, with softmax and its gradient in backward; the head's
        // gradient [vocab x d] in float32 while it is added to the unembedding's (when the unembedding trains).
        var rows = Math.Min(HeadChunkRows, tokens);
        var chunkBytes = 4L * rows * c.VocabSize * 4;
        var headGrad = lora ? 0 : unembedElems * 4;
        items.Add(new MemoryItem(MemoryPart.LmHead, chunkBytes + headGrad, update, string.Format(inv,
            "4 float32 buffers of {0} rows x {1:N0} vocab (chunk logits, softmax, their gradient){2}",
            rows, c.VocabSize, headGrad > 0 ? $" + the dense [vocab x d] head gradient in float32 ({ByteSize.Format(headGrad)})" : "")));

        // ---- LoRA
        items.Add(new MemoryItem(MemoryPart.Lora, lora ? loraElems * paramSize * 4 + adaptedElems * paramSize : 0, all, lora
            ? string.Format(inv, "rank {0}: {1:N0} adapter parameters x {2} B x 4 (A and B, gradients, exp_avg, exp_avg_sq) + the frozen base copy W0 of {3} weights ({4})",
                o.LoraRank, loraElems, paramSize, adapted.Length, ByteSize.Format(adaptedElems * paramSize))
            : "none (--lora-rank 0: full fine-tuning)"));

        // ---- KL reference: a frozen model in the precision that computes what the policy computed at the start
        var refSize = precision.FrozenEquivalent() == TrainPrecision.BFloat16Pure ? 2 : 4;
        items.Add(new MemoryItem(MemoryPart.KlReference, o.KlCoef > 0 ? p * refSize : 0, all, o.KlCoef > 0
            ? $"frozen copy of the model, {p.ToString("N0", inv)} x {refSize} B"
            : "none (--kl-coef 0)"));

        // ---- llama.cpp
        var offload = device == MemoryDevice.Cpu ? 1.0 : o.GpuLayers < 0 ? 1.0 : Math.Min(1.0, o.GpuLayers / (double)c.LayerCount);
        var where = device == MemoryDevice.Cpu ? "" : o.GpuLayers == 0 ? " (on the host: --gpu-layers 0)" : o.GpuLayers < 0 ? "" : $" ({o.GpuLayers}/{c.LayerCount} layers on the GPU)";
        var startBytes = model.Tensors.Sum(t => TensorBytes(t.Type, t.Shape));
        var quant = QuantType(o.RolloutQuant);
        var syncedBytes = model.Tensors.Sum(t => TensorBytes(t.Name == "rope_freqs.weight" ? t.Type : GgufTypePolicy.TensorType(t.Name, t.Shape, quant.Type), t.Shape));
        var residentModel = lora ? startBytes : Math.Max(startBytes, syncedBytes);
        var startType = model.Tensors.Where(t => t.Shape.Length >= 2).GroupBy(t => t.Type).OrderByDescending(g => g.Count()).FirstOrDefault()?.Key.ToString() ?? "?";
        items.Add(new MemoryItem(MemoryPart.SamplerModel, (long)(residentModel * offload), samplerModelPhases, lora
            ? $"the source model ({startType}, {ByteSize.Format(startBytes)}); LoRA adapters are hot-swapped, the model is never reloaded{where}"
            : $"the larger of the start model ({startType}, {ByteSize.Format(startBytes)}) and the synced --rollout-quant {quant.Name} ({ByteSize.Format(syncedBytes)}{(quant.Approximate ? ", approximate: llama-quantize mixes types" : "")}){where}"));

        var slots = (int)Math.Min(o.Parallel, (long)o.PromptsPerStep * o.SamplesPerPrompt);
        var perSeq = (long)o.MaxPromptTokens + o.MaxResponseTokens;
        var cells = o.ContextSize > 0 ? o.ContextSize : (perSeq + 255) / 256 * 256 * slots;
        var kvPerCell = (long)c.LayerCount * c.HeadCountKv * (c.HeadDim + c.HeadDimV) * 2; // F16 K and V
        items.Add(new MemoryItem(MemoryPart.KvCache, (long)(cells * kvPerCell * offload), contextPhases, o.ContextSize > 0
            ? string.Format(inv, "--context-size {0:N0} cells x {1:N0} B (F16 K and V, {2} layers){3}", cells, kvPerCell, c.LayerCount, where)
            : string.Format(inv, "{0} slots x {1:N0} cells ((max-prompt-tokens + max-response-tokens) rounded up to 256) x {2:N0} B (F16 K and V, {3} layers){4}",
                slots, cells / Math.Max(1, slots), kvPerCell, c.LayerCount, where)));

        // Logits of every slot each decode step; the compute buffer: on a GPU llama.cpp reserves its worst case (a full
        // ubatch's logits), on the CPU only the pages a graph writes become resident (one ubatch through a block).
        var logits = (long)slots * c.VocabSize * 4;
        long nq = (long)c.HeadCount * c.HeadDim, nkv = (long)c.HeadCountKv * c.HeadDim;
        var compute = device == MemoryDevice.Cuda && o.GpuLayers != 0
            ? (long)SamplerUBatch * (c.VocabSize + c.EmbeddingLength) * 4
            : (long)SamplerUBatch * (nq + 2 * nkv + 2L * c.FeedForwardLength + 2L * c.EmbeddingLength) * 4;
        items.Add(new MemoryItem(MemoryPart.SamplerBuffers, device == MemoryDevice.Cuda && o.GpuLayers == 0 ? 0 : logits + compute, contextPhases, string.Format(inv,
            "logits of {0} slots x {1:N0} vocab x 4 B + compute buffer ({2})", slots, c.VocabSize,
            device == MemoryDevice.Cuda ? "a ubatch of 512 tokens' logits, reserved" : "a ubatch of 512 tokens through one block")));

        // Weight sync (full fine-tuning): the new model is loaded before the old one and its context are freed.
        items.Add(new MemoryItem(MemoryPart.SyncReload, lora ? 0 : (long)(syncedBytes * offload), sync, lora
            ? "none (LoRA: adapters are hot-swapped)"
            : $"the synced {quant.Name} model ({ByteSize.Format(syncedBytes)}) loads while the old one still lives"));

        items.Add(new MemoryItem(MemoryPart.TransientCopies, device == MemoryDevice.Cpu ? (long)(CpuTransientCopiesPerWeightByte * p * 4) : 0, all, device == MemoryDevice.Cpu
            ? $"{CpuTransientCopiesPerWeightByte.ToString("0.#", inv)} x the float32 weights: copies the GC and malloc return late (calibrated on measured peaks, not derived)"
            : "none on the GPU (exports and checkpoints copy to host memory)"));

        return new MemoryPlan
        {
            Model = model, Options = o, Device = device, Items = items, MicroBatchTokens = tokens,
            ActivationsByCheckpointing = (without, with), TrainedParameters = trained,
        };
    }

    /// <summary>
    /// Option changes that bring the plan under <paramref name="limitBytes"/>, cheapest first: each single change that
    /// fits, else the first combination (checkpointing, smaller micro-batches, LoRA, bf16, fewer rollout slots) that does.
    /// Empty when the plan already fits or nothing tried fits.
    /// </summary>
    public IReadOnlyList<MemoryAdvice> Advise(long limitBytes)
    {
        if (PeakBytes <= limitBytes) return [];
        var o = Options;
        var steps = new List<(string Text, Func<TrainOptions, TrainOptions?> Apply)>
        {
            ("--gradient-checkpointing", x => x.GradientCheckpointing ? null : x with { GradientCheckpointing = true }),
        };
        foreach (var mb in new[] { 8192, 4096, 2048, 1024 })
            steps.Add(($"--micro-batch-tokens {mb}", x => x.MicroBatchTokens > mb ? x with { MicroBatchTokens = mb } : null));
        steps.Add(("--lora-rank 16", x => x.LoraRank > 0 ? null : x with { LoraRank = 16 }));
        steps.Add(("--dtype bf16", x => x.Dtype != TrainPrecision.Float32 ? null : x with { Dtype = TrainPrecision.BFloat16Mixed }));
        steps.Add(("--sampler-sleep true", x => x.SamplerSleep ? null : x with { SamplerSleep = true }));
        steps.Add(("--offload-sampler", x => x.OffloadSampler ? null : x with { SamplerSleep = true, OffloadSampler = true }));
        foreach (var par in new[] { 32, 16, 8 })
            steps.Add(($"--parallel {par}", x => x.Parallel > par ? x with { Parallel = par } : null));

        long Peak(TrainOptions x) => Compute(Model, x).PeakBytes;
        var singles = new List<MemoryAdvice>();
        foreach (var (text, apply) in steps)
        {
            if (apply(o) is not { } changed) continue;
            var peak = Peak(changed);
            // Of the micro-batch and parallel sizes only the largest that fits is worth naming.
            if (peak <= limitBytes && !singles.Any(s => SameOption(s.Options, text))) singles.Add(new MemoryAdvice(text, peak));
        }
        if (singles.Count > 0) return singles;
        var current = o;
        var applied = new List<string>();
        foreach (var (text, apply) in steps)
        {
            if (apply(current) is not { } changed) continue;
            current = changed;
            applied.RemoveAll(a => SameOption(a, text));
            applied.Add(text);
            var peak = Peak(current);
            if (peak <= limitBytes) return [new MemoryAdvice(string.Join(" ", applied), peak)];
        }
        return [];
    }

    private static bool SameOption(string a, string b) => a.Split(' ')[0] == b.Split(' ')[0];

    /// <summary>Tokens of one micro-batch: the mini-batch the settings allow (prompts at --max-prompt-tokens, responses at
    /// --max-response-tokens, the prompt once per group with --shared-prefix) capped by --micro-batch-tokens, but never
    /// less than one sequence (a sequence over the budget goes alone).</summary>
    public static long MicroBatchTokenCount(TrainOptions o)
    {
        ArgumentNullException.ThrowIfNull(o);
        long prompts = Math.Min(o.MiniBatchPrompts, o.PromptsPerStep);
        long response = Math.Max(0, o.MaxResponseTokens - 1); // the last response token enters no forward
        var mini = o.SharedPrefix
            ? prompts * (o.MaxPromptTokens + o.SamplesPerPrompt * response)
            : prompts * o.SamplesPerPrompt * (o.MaxPromptTokens + response);
        return Math.Max(Math.Min(mini, o.MicroBatchTokens), o.MaxPromptTokens + response);
    }

    /// <summary>
    /// Bytes autograd keeps per token in one block of this trainer (TransformerModel.RunBlock), counted tensor by tensor:
    /// attention norm (normalized, weighted: 2d), q/k/v inputs to SDPA after RoPE and GQA expansion (3 nq), its output and
    /// the reshaped copy Wo reads (2 nq), qwen3's q/k norms (input and normalized: 2 (nq + nkv)), the residual, FFN norm
    /// (3d), gate, up, silu(gate) and the product (4 ff), the block output (d). Under bf16 the norms keep float32 copies.
    /// </summary>
    public static long ActivationBytesPerTokenPerBlock(TransformerConfig c, int computeSize)
    {
        ArgumentNullException.ThrowIfNull(c);
        long d = c.EmbeddingLength, nq = (long)c.HeadCount * c.HeadDim, nkv = (long)c.HeadCountKv * c.HeadDim, ff = c.FeedForwardLength;
        var qk = c.QkNorm ? 2 * (nq + nkv) : 0;
        var elements = 6 * d + 5 * nq + qk + 4 * ff;
        var fp32Norms = computeSize == 2 ? 2 * (2 * d + (c.QkNorm ? nq + nkv : 0)) : 0; // 2 extra bytes per upcast element
        return elements * computeSize + fp32Norms;
    }

    private static bool IsAdapted(string name, long[] shape, IReadOnlyList<string> targets)
    {
        if (!name.StartsWith("blk.", StringComparison.Ordinal) || !name.EndsWith(".weight", StringComparison.Ordinal) || shape.Count(s => s > 1) != 2) return false;
        var parts = name.Split('.');
        return parts.Length >= 3 && targets.Contains(parts[2]);
    }

    private static long TensorBytes(GgmlType type, long[] shape)
    {
        var elements = ModelShape.Elements(shape);
        if (!GgmlTypeInfo.IsKnown(type)) return elements * 2;
        var block = GgmlTypeInfo.BlockSize(type);
        return (elements + block - 1) / block * GgmlTypeInfo.BlockBytes(type);
    }

    /// <summary>The ggml type of a --rollout-quant name; llama-quantize's mixes (Q4_K_M, ...) by their main type.</summary>
    private static (GgmlType Type, string Name, bool Approximate) QuantType(string name)
    {
        var n = (name ?? "").Trim().ToUpperInvariant();
        if (GgufTypePolicy.TryDirectType(n, out var direct)) return (direct, direct.ToString(), false);
        for (var s = n; s.Length > 0; s = s.Contains('_') ? s[..s.LastIndexOf('_')] : "")
            if (Enum.TryParse<GgmlType>(s, ignoreCase: true, out var t) && GgmlTypeInfo.IsKnown(t)) return (t, n, true);
        throw new BupoException($"--rollout-quant: unknown type '{name}'; one of: {string.Join(", ", WeightSync.TypeNames)}");
    }

    private static MemoryDevice DeviceOf(string spec) =>
        ModelDevice.ParseSpec(spec).Type == TorchSharp.DeviceType.CUDA ? MemoryDevice.Cuda : MemoryDevice.Cpu;
}

/// <summary>Byte counts as the CLI reads and prints them (<c>--memory 24GiB</c>).</summary>
public static class ByteSize
{
    private static readonly (string Suffix, long Factor)[] Units =
    [
        ("TIB", 1L << 40), ("GIB", 1L << 30), ("MIB", 1L << 20), ("KIB", 1L << 10),
        ("TB", 1_000_000_000_000L), ("GB", 1_000_000_000L), ("MB", 1_000_000L), ("KB", 1_000L),
        ("T", 1L << 40), ("G", 1L << 30), ("M", 1L << 20), ("K", 1L << 10), ("B", 1),
    ];

    /// <summary>
    /// Parses "24GiB", "24 GB", "1.5T", "512MiB", "1000000": binary units (KiB..TiB, and K/M/G/T alone) are powers of 1024,
    /// decimal ones (KB..TB) powers of 1000, a bare number is bytes.
    /// </summary>
    /// <exception cref="BupoException">Anything else, or a value that is not positive.</exception>
    public static long Parse(string text, string option = "--memory")
    {
        var s = (text ?? "").Trim();
        var upper = s.ToUpperInvariant();
        long factor = 1;
        foreach (var (suffix, f) in Units)
            if (upper.EndsWith(suffix, StringComparison.Ordinal))
            {
                factor = f;
                s = s[..^suffix.Length].Trim();
                break;
            }
        if (!double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) || !double.IsFinite(v) || v <= 0 || v * factor >= long.MaxValue)
            throw new BupoException($"{option}: '{text}' is not a memory size (e.g. 24GiB, 512MiB, 16GB)");
        return (long)Math.Round(v * factor);
    }

    /// <summary>Bytes in binary units with one decimal ("812.4 MiB"); below 1 KiB as bytes.</summary>
    public static string Format(long bytes)
    {
        var inv = CultureInfo.InvariantCulture;
        if (Math.Abs(bytes) < 1024) return $"{bytes} B";
        string[] names = ["KiB", "MiB", "GiB", "TiB"];
        double v = bytes;
        var i = -1;
        while (Math.Abs(v) >= 1024 && i < names.Length - 1) { v /= 1024; i++; }
        return v.ToString("0.0", inv) + " " + names[i];
    }
}
