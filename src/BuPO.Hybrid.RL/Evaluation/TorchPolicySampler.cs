using System.Diagnostics;
using BuPO.Hybrid.Model;
using BuPO.Hybrid.Rollout;
using BuPO.Hybrid.Tokenizers;
using static TorchSharp.torch;

namespace BuPO.Hybrid.RL.Evaluation;

/// <summary>
/// Samples from a <see cref="TransformerModel"/> in torch: the final policy, or block k's internal layer policy
/// π^k = softmax(h_k E_uᵀ / T) with no final norm, exactly the distribution BuPO's IPA objective trains (BUPO_SPEC.md §2, §5).
/// No KV cache: every step runs a shared-prefix forward (<see cref="PrefixGroupBatch"/>: each prompt once, its samples'
/// tokens so far as suffixes) through blocks 0..k only. Meant for small models and evaluation, not for training rollouts.
/// Temperature 0 is greedy; top-p/top-k/min-p and stop strings are not supported (one clear error).
/// </summary>
public sealed class TorchPolicySampler : IRolloutGenerator
{
    private readonly TransformerModel _model;
    private readonly ITextTokenizer _tokenizer;

    /// <summary>Block k whose internal policy is sampled, or null for the final policy.</summary>
    public int? Layer { get; }

    /// <summary>Prompts decoded together (each with all its samples).</summary>
    public int PromptsPerBatch { get; init; } = 16;

    public RolloutStats LastStats { get; private set; } = new(0, 0);

    public TorchPolicySampler(TransformerModel model, ITextTokenizer tokenizer, int? layer)
    {
        _model = model;
        _tokenizer = tokenizer;
        if (layer is { } k && (k < 0 || k >= model.Config.LayerCount))
            throw new BupoException($"--policy-layer {k} is outside the model's blocks 0..{model.Config.LayerCount - 1}");
        Layer = layer;
    }

    /// <summary>The policy's log-probs of every next token of <paramref name="tokens"/> ([T-1] values, float64), for checks.</summary>
    public double[] LogProbs(int[] tokens, double temperature = 1.0)
    {
        using var scope = NewDisposeScope();
        using (no_grad())
        {
            using var batch = new PrefixGroupBatch([new PrefixGroup(tokens, [])], _model.Device);
            using var fwd = _model.Forward(batch, new ForwardOptions { StopAfterBlock = Layer, ComputeLogits = false });
            var head = Head(temperature);
            var h = fwd.LastHidden.squeeze(0).narrow(0, 0, tokens.Length - 1);
            var targets = tensor(tokens.Skip(1).Select(t => (long)t).ToArray(), ScalarType.Int64, _model.Device);
            return head.LogProbs(h, targets).to_type(ScalarType.Float64).cpu().data<double>().ToArray();
        }
    }

    private InternalPolicyHead Head(double temperature)
        => Layer is null ? InternalPolicyHead.FullPolicy(_model, temperature) : new InternalPolicyHead(_model, LensNorm.Identity, temperature);

    public IReadOnlyList<RolloutResult> Generate(RolloutRequest request, IProgress<int>? completed = null, CancellationToken ct = default)
    {
        var s = request.Sampling;
        if (s.TopP < 1 || s.TopK > 0 || s.MinP > 0 || s.StopStrings.Count > 0)
            throw new BupoException("the torch policy sampler samples the whole distribution: top-p, top-k, min-p and stop strings are not supported");
        var k = request.SamplesPerPrompt;
        var n = request.PromptTokens.Count;
        var result = new RolloutResult[n * k];
        var clock = Stopwatch.StartNew();
        long generated = 0;
        var done = 0;
        var head = Head(s.Temperature > 0 ? s.Temperature : 1.0);
        for (var start = 0; start < n; start += PromptsPerBatch)
        {
            var prompts = Enumerable.Range(start, Math.Min(PromptsPerBatch, n - start)).ToArray();
            var tokens = prompts.Select(_ => Enumerable.Range(0, k).Select(_ => new List<int>()).ToArray()).ToArray();
            var logps = prompts.Select(_ => Enumerable.Range(0, k).Select(_ => new List<float>()).ToArray()).ToArray();
            var finished = prompts.Select(_ => new FinishReason?[k]).ToArray();
            var rngs = prompts.Select(p => Enumerable.Range(0, k).Select(j => new RolloutRng(RolloutRng.SequenceSeed(request.Seed, p, j))).ToArray()).ToArray();
            for (var step = 0; step < s.MaxTokens; step++)
            {
                ct.ThrowIfCancellationRequested();
                var active = new List<(int P, int J)>();
                for (var p = 0; p < prompts.Length; p++)
                    for (var j = 0; j < k; j++)
                        if (finished[p][j] is null) active.Add((p, j));
                if (active.Count == 0) break;
                float[] probs;
                var groups = prompts.Select((pi, p) => new PrefixGroup(request.PromptTokens[pi], tokens[p].Select(t => t.ToArray()).ToArray())).ToArray();
                var vocab = _model.Config.VocabSize;
                using (NewDisposeScope())
                using (no_grad())
                {
                    using var batch = new PrefixGroupBatch(groups, _model.Device);
                    using var fwd = _model.Forward(batch, new ForwardOptions { StopAfterBlock = Layer, ComputeLogits = false });
                    var rows = tensor(active.Select(a => (long)batch.PredictorIndex(a.P, a.J, tokens[a.P][a.J].Count)).ToArray(), ScalarType.Int64, _model.Device);
                    var h = fwd.LastHidden.reshape(-1, fwd.LastHidden.shape[^1]).index_select(0, rows);
                    probs = head.Logits(h).to_type(ScalarType.Float64).softmax(-1).to_type(ScalarType.Float32).cpu().contiguous().data<float>().ToArray();
                }
                for (var a = 0; a < active.Count; a++)
                {
                    var (p, j) = active[a];
                    var row = probs.AsSpan(a * vocab, vocab);
                    int id;
                    if (s.Temperature <= 0)
                    {
                        id = 0;
                        for (var v = 1; v < vocab; v++) if (row[v] > row[id]) id = v;
                    }
                    else
                    {
                        var u = rngs[p][j].NextDouble();
                        double acc = 0;
                        id = vocab - 1;
                        for (var v = 0; v < vocab; v++)
                        {
                            acc += row[v];
                            if (u < acc) { id = v; break; }
                        }
                    }
                    tokens[p][j].Add(id);
                    logps[p][j].Add(s.Temperature <= 0 ? 0f : MathF.Log(Math.Max(row[id], float.Epsilon)));
                    generated++;
                    if (_tokenizer.IsEndOfGeneration(id)) finished[p][j] = FinishReason.EndOfSequence;
                    else if (tokens[p][j].Count >= s.MaxTokens) finished[p][j] = FinishReason.MaxTokens;
                }
            }
            for (var p = 0; p < prompts.Length; p++)
                for (var j = 0; j < k; j++)
                {
                    var resp = tokens[p][j].ToArray();
                    var textIds = resp.Length > 0 && _tokenizer.IsEndOfGeneration(resp[^1]) ? resp[..^1] : resp;
                    var lp = logps[p][j].ToArray();
                    result[prompts[p] * k + j] = new RolloutResult(prompts[p], j, request.PromptTokens[prompts[p]], resp, lp, lp,
                        _tokenizer.Decode(textIds, removeSpecial: true), finished[p][j] ?? FinishReason.MaxTokens);
                    completed?.Report(++done);
                }
        }
        LastStats = new RolloutStats(generated, clock.Elapsed.TotalSeconds);
        return result;
    }
}
