using System.Diagnostics;
using BuPO.Hybrid.Model;
using TorchSharp;
using static TorchSharp.torch;
using BuPO.Hybrid.RL.Algorithms;

namespace BuPO.Hybrid.RL.Training;

/// <summary>One response to train on: its group (prompt), tokens, the sampler's log-probs and its advantage.</summary>
/// <param name="Group">Index of the prompt (mini-batches are cut between whole groups).</param>
/// <param name="PromptTokens">The prompt's tokens (at least one).</param>
/// <param name="ResponseTokens">The response's tokens (may be empty: such a sequence adds nothing to the loss).</param>
/// <param name="BehaviorLogProbs">log π_behaviour per response token: the distribution the token was actually drawn from (temperature and truncation applied; same length as <paramref name="ResponseTokens"/>). TIS weights are min(π_old / π_behaviour, cap).</param>
/// <param name="Advantage">Â of the response (the same for every token).</param>
public sealed record TrainingSequence(int Group, int[] PromptTokens, int[] ResponseTokens, float[] BehaviorLogProbs, double Advantage);

/// <summary>One optimizer step (one mini-batch) of an update.</summary>
/// <param name="Loss">The mini-batch's aggregated loss.</param>
/// <param name="ClipFraction">Share of its response tokens whose clipped term was active.</param>
/// <param name="ApproxKl">Mean log π_old - log π_new over its response tokens.</param>
/// <param name="GradNorm">Pre-clip gradient norm (NaN or infinite when the step was skipped).</param>
/// <param name="Skipped">Whether the non-finite norm skipped the step.</param>
public sealed record OptimizerStepStats(double Loss, double ClipFraction, double ApproxKl, double GradNorm, bool Skipped);

/// <summary>What one <see cref="GrpoTrainer.Update"/> did, averaged over its response tokens or optimizer steps.</summary>
public sealed record UpdateStats
{
    /// <summary>"ipa" (internal policy of block k) or "grpo" (full policy).</summary>
    public required string Phase { get; init; }
    public double Lr { get; init; }
    public double Loss { get; init; }
    public double ClipFraction { get; init; }
    public double DualClipFraction { get; init; }
    /// <summary>Mean log π_old - log π_new over the trained tokens (verl's ppo_kl).</summary>
    public double ApproxKl { get; init; }
    /// <summary>Mean k3 KL to the reference (when the KL term is on; else NaN).</summary>
    public double RefKl { get; init; } = double.NaN;
    /// <summary>Mean pre-clip gradient norm of the optimizer steps.</summary>
    public double GradNorm { get; init; }
    public int OptimizerSteps { get; init; }
    /// <summary>Each mini-batch in order (epochs included): loss, clip fraction, approx KL, grad norm.</summary>
    public IReadOnlyList<OptimizerStepStats> PerOptimizerStep { get; init; } = [];
    /// <summary>Optimizer steps skipped because the gradient norm was not finite.</summary>
    public int SkippedSteps { get; init; }
    /// <summary>Entropy of the full policy (temperature T) over the response tokens, from the no-grad pass.</summary>
    public double EntropyFull { get; init; }
    /// <summary>Entropy of block k's internal policy over the response tokens (NaN without a layer).</summary>
    public double EntropyLayer { get; init; } = double.NaN;
    public required MismatchStats Mismatch { get; init; }
    public long ResponseTokens { get; init; }
    /// <summary>Sequence tokens through forward+backward in the update passes (the no-grad pass not counted).</summary>
    public long TrainTokens { get; init; }
    public double OldLogProbSeconds { get; init; }
    public double UpdateSeconds { get; init; }
}

/// <summary>
/// The update side of GRPO/BuPO (BUPO_SPEC.md §4-6) on a <see cref="TransformerModel"/>: a no-grad pass recomputes the
/// old log-probs (full policy, and block k's internal policy), measures the sampler mismatch and makes the truncated
/// importance weights; then for each PPO epoch the groups are shuffled into mini-batches, each mini-batch split into
/// micro-batches by a token budget whose gradients accumulate (scaled so the sum is the mini-batch's aggregate), and
/// one AdamW step with grad-norm clipping follows (a non-finite norm skips it). During IPA steps both old and new
/// log-probs come from block k's internal policy and only blocks 0..k run in the differentiable pass.
/// </summary>
public sealed class GrpoTrainer : IDisposable
{
    private readonly GrpoSettings _o;
    private readonly TransformerModel? _reference;
    private readonly LoraSet? _lora;

    public TransformerModel Model { get; }
    public AdamW Optimizer { get; }

    /// <param name="model">The trained model.</param>
    /// <param name="options">Algorithm and optimizer settings.</param>
    /// <param name="reference">The frozen reference model of the KL term (needed when kl-coef &gt; 0).</param>
    /// <param name="lora">LoRA adapters: only they are trained (the model's other weights are frozen).</param>
    public GrpoTrainer(TransformerModel model, GrpoSettings options, TransformerModel? reference = null, LoraSet? lora = null)
    {
        Model = model;
        ArgumentNullException.ThrowIfNull(options);
        _o = options;
        _reference = reference;
        _lora = lora;
        if (options.KlCoef > 0 && reference is null) throw new ArgumentException("kl-coef > 0 needs a reference model", nameof(reference));
        Optimizer = new AdamW(lora?.Parameters ?? model.GgufParameters, options.Beta1, options.Beta2, options.AdamEps, options.WeightDecay);
    }

    /// <summary>The LoRA adapters trained, or null for full fine-tuning.</summary>
    public LoraSet? Lora => _lora;

    private void ZeroGrad()
    {
        Optimizer.ZeroGrad();
        _lora?.ClearBaseGrads();
    }

    /// <summary>Whether 1-based step <paramref name="step"/> optimizes block k's internal policy.</summary>
    public static bool IsIpaStep(int step, int? layer, int bupoSteps) => layer is not null && step <= bupoSteps;

    /// <summary>
    /// Trains on one rollout batch. <paramref name="layer"/>: BuPO's block k (also used for the layer-entropy metric), or
    /// null; <paramref name="ipa"/>: optimize block k's internal policy in this step.
    /// </summary>
    public UpdateStats Update(int step, IReadOnlyList<TrainingSequence> sequences, int? layer, bool ipa, double lr)
    {
        if (ipa && layer is null) throw new ArgumentException("an IPA step needs a layer", nameof(layer));
        if (layer is { } kk && (kk < 0 || kk >= Model.Config.LayerCount))
            throw new BupoException($"--bupo-layer {kk} is outside the model's blocks 0..{Model.Config.LayerCount - 1}");
        foreach (var s in sequences)
        {
            if (s.PromptTokens.Length == 0) throw new ArgumentException("a sequence has an empty prompt");
            if (s.BehaviorLogProbs.Length != s.ResponseTokens.Length) throw new ArgumentException("sampler log-probs do not match the response");
        }
        var swOld = Stopwatch.StartNew();
        var old = OldPass(sequences, layer, ipa);
        var oldSeconds = swOld.Elapsed.TotalSeconds;

        var swUpdate = Stopwatch.StartNew();
        var groups = sequences.Select((s, i) => (s.Group, i)).GroupBy(x => x.Group).Select(g => g.Select(x => x.i).ToArray()).ToArray();
        double lossSum = 0, clipSum = 0, dualSum = 0, klSum = 0, refKlSum = 0, gradNormSum = 0;
        long tokenSum = 0, trainTokens = 0;
        int optSteps = 0, skipped = 0, miniBatches = 0;
        var perStep = new List<OptimizerStepStats>();
        var clip = _o.Clip;
        for (var epoch = 0; epoch < _o.PpoEpochs; epoch++)
        {
            var order = Shuffle(groups.Length, SplitMix64.Derive((ulong)_o.Seed, 0x7261696E, (ulong)step, (ulong)epoch));
            for (var start = 0; start < order.Length; start += _o.MiniBatchPrompts)
            {
                var mb = order.Skip(start).Take(_o.MiniBatchPrompts).SelectMany(g => groups[g]).ToArray();
                var mbTokens = mb.Sum(i => (long)sequences[i].ResponseTokens.Length);
                var mbSeqs = mb.Count(i => sequences[i].ResponseTokens.Length > 0);
                if (mbTokens == 0) continue;
                ZeroGrad();
                double mbLoss = 0, mbClip = 0, mbKl = 0;
                foreach (var micro in MicroBatches(mb.Where(i => sequences[i].ResponseTokens.Length > 0).ToArray(), sequences))
                {
                    using var scope = NewDisposeScope();
                    var seqs = micro.Select(i => sequences[i]).ToArray();
                    using var batch = MakeBatch(seqs, out var gather, out var scatter, out var targets, out var respMask);
                    trainTokens += batch.TokenCount;
                    var fwd = batch.Forward(Model, new ForwardOptions
                    {
                        StopAfterBlock = ipa ? layer : null, ComputeLogits = false, GradientCheckpointing = _o.GradientCheckpointing,
                    });
                    var head = ipa ? new InternalPolicyHead(Model, LensNorm.Identity, _o.Temperature) : InternalPolicyHead.FullPolicy(Model, _o.Temperature);
                    var hidden = Select(fwd.LastHidden, gather);
                    var lpFlat = head.LogProbs(hidden, targets);
                    var b = seqs.Length;
                    var r = seqs.Max(s => s.ResponseTokens.Length);
                    var lp = ToPadded(lpFlat, scatter, b, r);
                    var oldLp = Padded(micro.Select(i => ipa ? old.Layer![i] : old.Full[i]).ToArray(), r);
                    var adv = tensor(micro.Select(i => (float)sequences[i].Advantage).ToArray(), ScalarType.Float32, Model.Device);
                    var weights = _o.Tis ? Padded(micro.Select(i => old.TisWeights[i]).ToArray(), r) : null;
                    var pl = PolicyLoss.Compute(lp, oldLp, adv, respMask, clip, weights);
                    var loss = pl.Loss;
                    if (_o.KlCoef > 0)
                    {
                        var refLp = Padded(micro.Select(i => old.Reference![i]).ToArray(), r);
                        var k3 = PolicyLoss.Aggregate(PolicyLoss.K3Kl(lp, refLp), respMask, clip.Aggregation, clip.TokenSumNormalizer);
                        using var klCoef = _o.KlCoef.ToScalar();
                        loss = loss.add(k3, klCoef);
                        using (no_grad()) refKlSum += (PolicyLoss.K3Kl(lp, refLp) * respMask).sum().to_type(ScalarType.Float64).item<double>();
                    }
                    if (_o.EntropyCoef > 0)
                    {
                        var ent = ToPadded(head.Entropy(hidden), scatter, b, r);
                        using var entropyCoef = (-_o.EntropyCoef).ToScalar();
                        loss = loss.add(PolicyLoss.Aggregate(ent, respMask, clip.Aggregation, clip.TokenSumNormalizer), entropyCoef);
                    }
                    var microTokens = seqs.Sum(s => (long)s.ResponseTokens.Length);
                    // Micro-batch aggregates are means over the micro-batch; weight them so the sum is the mini-batch's.
                    var scale = clip.Aggregation == LossAggregation.TokenMean ? (double)microTokens / mbTokens : (double)seqs.Length / mbSeqs;
                    using var scaleScalar = scale.ToScalar();
                    var scaled = loss.mul(scaleScalar);
                    scaled.backward();
                    mbLoss += scaled.detach().to_type(ScalarType.Float64).item<double>();
                    clipSum += pl.ClipFraction * microTokens;
                    mbClip += pl.ClipFraction * microTokens;
                    mbKl += pl.ApproxKl * microTokens;
                    dualSum += pl.DualClipFraction * microTokens;
                    klSum += pl.ApproxKl * microTokens;
                    tokenSum += microTokens;
                    fwd.Dispose();
                }
                _lora?.PropagateGrads();
                var norm = Optimizer.GradNorm();
                if (!double.IsFinite(norm))
                {
                    skipped++;
                }
                else
                {
                    Optimizer.ClipGrads(norm, _o.GradClip);
                    Optimizer.Step(lr);
                    _lora?.Merge();
                    gradNormSum += norm;
                    optSteps++;
                }
                ZeroGrad();
                perStep.Add(new OptimizerStepStats(mbLoss, mbClip / mbTokens, mbKl / mbTokens, norm, !double.IsFinite(norm)));
                lossSum += mbLoss;
                miniBatches++;
            }
        }
        var n = Math.Max(1, tokenSum);
        return new UpdateStats
        {
            Phase = ipa ? "ipa" : "grpo",
            Lr = lr,
            Loss = miniBatches == 0 ? 0 : lossSum / miniBatches,
            ClipFraction = clipSum / n,
            DualClipFraction = dualSum / n,
            ApproxKl = klSum / n,
            RefKl = _o.KlCoef > 0 ? refKlSum / n : double.NaN,
            GradNorm = optSteps == 0 ? double.NaN : gradNormSum / optSteps,
            OptimizerSteps = optSteps,
            PerOptimizerStep = perStep,
            SkippedSteps = skipped,
            EntropyFull = old.EntropyFull,
            EntropyLayer = old.EntropyLayer,
            Mismatch = old.Mismatch,
            ResponseTokens = sequences.Sum(s => (long)s.ResponseTokens.Length),
            TrainTokens = trainTokens,
            OldLogProbSeconds = oldSeconds,
            UpdateSeconds = swUpdate.Elapsed.TotalSeconds,
        };
    }

    private sealed class OldValues
    {
        public required float[][] Full;
        public float[][]? Layer;
        public float[][]? Reference;
        public required float[][] TisWeights;
        public double EntropyFull;
        public double EntropyLayer = double.NaN;
        public required MismatchStats Mismatch;
    }

    /// <summary>The no-grad pass: old log-probs (full and layer k), reference log-probs, entropies, mismatch, TIS weights.</summary>
    private OldValues OldPass(IReadOnlyList<TrainingSequence> sequences, int? layer, bool ipa)
    {
        var n = sequences.Count;
        var full = new float[n][];
        var lay = layer is null ? null : new float[n][];
        var refs = _o.KlCoef > 0 ? new float[n][] : null;
        double entFullSum = 0, entLayerSum = 0;
        long tokens = 0;
        using (no_grad())
        {
            // Group order (stable) so that a group's responses share one prompt forward; results are stored by index.
            var idx = Enumerable.Range(0, n).Where(i => sequences[i].ResponseTokens.Length > 0).OrderBy(i => sequences[i].Group).ToArray();
            foreach (var i in Enumerable.Range(0, n).Where(i => sequences[i].ResponseTokens.Length == 0))
            {
                full[i] = [];
                if (lay != null) lay[i] = [];
                if (refs != null) refs[i] = [];
            }
            foreach (var micro in MicroBatches(idx, sequences))
            {
                using var scope = NewDisposeScope();
                var seqs = micro.Select(i => sequences[i]).ToArray();
                using var batch = MakeBatch(seqs, out var gather, out _, out var targets, out _);
                var fwd = batch.Forward(Model, new ForwardOptions
                {
                    ComputeLogits = false,
                    Residuals = layer is { } k ? ForwardOptions.Blocks(k) : ForwardOptions.Blocks(),
                });
                var fullHead = InternalPolicyHead.FullPolicy(Model, _o.Temperature);
                var hFull = Select(fwd.LastHidden, gather);
                Split(fullHead.LogProbs(hFull, targets), seqs, micro, full);
                entFullSum += fullHead.Entropy(hFull).to_type(ScalarType.Float64).sum().item<double>();
                if (layer is { } kl)
                {
                    var layerHead = new InternalPolicyHead(Model, LensNorm.Identity, _o.Temperature);
                    var hLayer = Select(fwd.Residuals[kl], gather);
                    Split(layerHead.LogProbs(hLayer, targets), seqs, micro, lay!);
                    entLayerSum += layerHead.Entropy(hLayer).to_type(ScalarType.Float64).sum().item<double>();
                }
                if (refs != null)
                {
                    var reference = _reference!;
                    var rf = batch.Forward(reference, new ForwardOptions { ComputeLogits = false, StopAfterBlock = ipa ? layer : null });
                    var refHead = ipa ? new InternalPolicyHead(reference, LensNorm.Identity, _o.Temperature) : InternalPolicyHead.FullPolicy(reference, _o.Temperature);
                    Split(refHead.LogProbs(Select(rf.LastHidden, gather), targets), seqs, micro, refs);
                    rf.Dispose();
                }
                tokens += seqs.Sum(s => s.ResponseTokens.Length);
                fwd.Dispose();
            }
        }
        var weights = new float[n][];
        MismatchStats mismatch;
        using (NewDisposeScope())
        {
            var oldAll = tensor(full.SelectMany(x => x).ToArray());
            var sampAll = tensor(sequences.SelectMany(s => s.BehaviorLogProbs).ToArray());
            var maskAll = ones(oldAll.shape[0], ScalarType.Float32);
            mismatch = oldAll.shape[0] == 0 ? new MismatchStats(0, 0, 0, 0) : SamplerMismatch.Measure(oldAll, sampAll, maskAll, _o.TisCap);
            var w = SamplerMismatch.Weights(oldAll, sampAll, maskAll, _o.TisCap).data<float>().ToArray();
            var at = 0;
            for (var i = 0; i < n; i++)
            {
                weights[i] = w.AsSpan(at, full[i].Length).ToArray();
                at += full[i].Length;
            }
        }
        var denom = Math.Max(1, tokens);
        return new OldValues
        {
            Full = full, Layer = lay, Reference = refs, TisWeights = weights, Mismatch = mismatch,
            EntropyFull = entFullSum / denom, EntropyLayer = layer is null ? double.NaN : entLayerSum / denom,
        };
    }

    private static void Split(Tensor flat, TrainingSequence[] seqs, int[] micro, float[][] into)
    {
        var v = flat.to_type(ScalarType.Float32).cpu().data<float>().ToArray();
        var at = 0;
        for (var j = 0; j < seqs.Length; j++)
        {
            var len = seqs[j].ResponseTokens.Length;
            into[micro[j]] = v.AsSpan(at, len).ToArray();
            at += len;
        }
    }

    /// <summary>
    /// Splits sequence indices (in order) into micro-batches within the token budget: with the shared prefix, whole runs
    /// of consecutive responses to one prompt (a unit costs its prompt once plus its responses); without, sequences
    /// whose padded size (count × longest input) fits. A unit or sequence over the budget goes alone.
    /// </summary>
    private IEnumerable<int[]> MicroBatches(int[] indices, IReadOnlyList<TrainingSequence> sequences)
    {
        var units = _o.SharedPrefix
            ? PrefixUnits(indices, sequences).SelectMany(u => WithinBudget(u, sequences))
            : indices.Select(i => new[] { i });
        // Shared prefix: packed tokens add up; padded rows: count × longest input.
        long Cost(long packed, int count, int longest) => _o.SharedPrefix ? packed : (long)count * longest;
        var current = new List<int>();
        long packed = 0;
        var longest = 0;
        foreach (var unit in units)
        {
            var unitPacked = sequences[unit[0]].PromptTokens.Length + unit.Sum(i => (long)ResponseInputLength(sequences[i]));
            var unitLongest = unit.Max(i => InputLength(sequences[i]));
            if (current.Count > 0 && Cost(packed + unitPacked, current.Count + unit.Length, Math.Max(longest, unitLongest)) > _o.MicroBatchTokens)
            {
                yield return current.ToArray();
                current.Clear();
                packed = 0;
                longest = 0;
            }
            current.AddRange(unit);
            packed += unitPacked;
            longest = Math.Max(longest, unitLongest);
        }
        if (current.Count > 0) yield return current.ToArray();
    }

    /// <summary>
    /// A group's responses cut into pieces that each fit the token budget with the prompt (which every piece forwards
    /// again), so that long responses never make one micro-batch larger than the budget the per-sequence path keeps.
    /// </summary>
    private IEnumerable<int[]> WithinBudget(int[] unit, IReadOnlyList<TrainingSequence> sequences)
    {
        var prompt = sequences[unit[0]].PromptTokens.Length;
        var piece = new List<int>();
        long cost = prompt;
        foreach (var i in unit)
        {
            var len = ResponseInputLength(sequences[i]);
            if (piece.Count > 0 && cost + len > _o.MicroBatchTokens)
            {
                yield return piece.ToArray();
                piece.Clear();
                cost = prompt;
            }
            piece.Add(i);
            cost += len;
        }
        if (piece.Count > 0) yield return piece.ToArray();
    }

    /// <summary>Runs of consecutive indices whose sequences have the same group and the same prompt tokens.</summary>
    private static IEnumerable<int[]> PrefixUnits(IReadOnlyList<int> indices, IReadOnlyList<TrainingSequence> sequences)
    {
        var unit = new List<int>();
        foreach (var i in indices)
        {
            if (unit.Count > 0)
            {
                var first = sequences[unit[0]];
                if (first.Group != sequences[i].Group || !first.PromptTokens.AsSpan().SequenceEqual(sequences[i].PromptTokens))
                {
                    yield return unit.ToArray();
                    unit.Clear();
                }
            }
            unit.Add(i);
        }
        if (unit.Count > 0) yield return unit.ToArray();
    }

    /// <summary>The model input: prompt and response without its last token (which predicts nothing we train).</summary>
    private static int InputLength(TrainingSequence s) => s.PromptTokens.Length + ResponseInputLength(s);

    /// <summary>The response tokens that enter the model (all but the last).</summary>
    private static int ResponseInputLength(TrainingSequence s) => Math.Max(0, s.ResponseTokens.Length - 1);

    /// <summary>A micro-batch's model input: padded rows (one per sequence) or a packed shared-prefix batch.</summary>
    private sealed class ModelInput(TokenBatch? padded, PrefixGroupBatch? grouped, long tokenCount) : IDisposable
    {
        /// <summary>Tokens through the model (padding not counted).</summary>
        public long TokenCount => tokenCount;

        public ForwardResult Forward(TransformerModel model, ForwardOptions options)
            => grouped is not null ? model.Forward(grouped, options) : model.Forward(padded!, options);

        public void Dispose()
        {
            padded?.Dispose();
            grouped?.Dispose();
        }
    }

    /// <summary>
    /// The model input of <paramref name="seqs"/>; <paramref name="gather"/>: flat row of the hidden state that predicts
    /// each response token (in sequence order); <paramref name="scatter"/>: its slot in a [B*R] response layout;
    /// <paramref name="targets"/>: the response tokens; <paramref name="mask"/>: [B, R] response mask.
    /// </summary>
    private ModelInput MakeBatch(TrainingSequence[] seqs, out Tensor gather, out Tensor scatter, out Tensor targets, out Tensor mask)
    {
        var r = Math.Max(1, seqs.Max(s => s.ResponseTokens.Length));
        var g = new List<long>();
        var sc = new List<long>();
        var tg = new List<long>();
        var m = new float[seqs.Length * r];
        ModelInput input;
        static int[] Input(TrainingSequence s) => s.ResponseTokens.Take(ResponseInputLength(s)).ToArray();
        if (_o.SharedPrefix)
        {
            // Consecutive sequences of one group with the same prompt become one PrefixGroup.
            var groups = new List<PrefixGroup>();
            var place = new (int Group, int Suffix)[seqs.Length];
            var units = PrefixUnits(Enumerable.Range(0, seqs.Length).ToArray(), seqs).ToArray();
            foreach (var unit in units)
            {
                for (var j = 0; j < unit.Length; j++) place[unit[j]] = (groups.Count, j);
                groups.Add(new PrefixGroup(seqs[unit[0]].PromptTokens, unit.Select(i => Input(seqs[i])).ToArray()));
            }
            var packed = new PrefixGroupBatch(groups, Model.Device);
            for (var b = 0; b < seqs.Length; b++)
                for (var j = 0; j < seqs[b].ResponseTokens.Length; j++)
                    g.Add(packed.PredictorIndex(place[b].Group, place[b].Suffix, j));
            input = new ModelInput(null, packed, packed.TokenCount);
        }
        else
        {
            var inputs = seqs.Select(s => s.PromptTokens.Concat(Input(s)).ToArray()).ToArray();
            var t = inputs.Max(x => x.Length);
            for (var b = 0; b < seqs.Length; b++)
                for (var j = 0; j < seqs[b].ResponseTokens.Length; j++)
                    g.Add((long)b * t + seqs[b].PromptTokens.Length - 1 + j);
            input = new ModelInput(TokenBatch.Create(inputs, Model.Device), null, inputs.Sum(x => (long)x.Length));
        }
        for (var b = 0; b < seqs.Length; b++)
            for (var j = 0; j < seqs[b].ResponseTokens.Length; j++)
            {
                sc.Add((long)b * r + j);
                tg.Add(seqs[b].ResponseTokens[j]);
                m[b * r + j] = 1;
            }
        var dev = Model.Device;
        gather = tensor(g.ToArray(), ScalarType.Int64, dev);
        scatter = tensor(sc.ToArray(), ScalarType.Int64, dev);
        targets = tensor(tg.ToArray(), ScalarType.Int64, dev);
        mask = tensor(m, [seqs.Length, r], ScalarType.Float32, dev);
        return input;
    }

    private static Tensor Select(Tensor hidden, Tensor gather) => hidden.reshape(-1, hidden.shape[^1]).index_select(0, gather);

    private static Tensor ToPadded(Tensor flat, Tensor scatter, long b, long r)
        => zeros(b * r, flat.dtype, flat.device).index_add(0, scatter, flat, ScalarConstants.One).reshape(b, r);

    private Tensor Padded(float[][] rows, int r)
    {
        var data = new float[rows.Length * r];
        for (var i = 0; i < rows.Length; i++) rows[i].CopyTo(data, i * r);
        return tensor(data, [rows.Length, r], ScalarType.Float32, Model.Device);
    }

    /// <summary>A deterministic permutation of 0..n-1 (Fisher-Yates on SplitMix64 draws).</summary>
    public static int[] Shuffle(int n, ulong seed)
    {
        var a = Enumerable.Range(0, n).ToArray();
        var state = seed;
        for (var i = n - 1; i > 0; i--)
        {
            state = SplitMix64.Derive(state, (ulong)i);
            var j = (int)(state % (ulong)(i + 1));
            (a[i], a[j]) = (a[j], a[i]);
        }
        return a;
    }

    public void Dispose() => Optimizer.Dispose();
}
