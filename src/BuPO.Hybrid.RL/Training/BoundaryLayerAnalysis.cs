using System.Text;
using System.Text.Json;
using BuPO.Hybrid.Analysis;
using BuPO.Hybrid.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace BuPO.Hybrid.RL.Training;

/// <summary>The result of the boundary-layer analysis behind <c>--bupo-layer auto</c>.</summary>
/// <param name="Layer">The chosen block k (0-based).</param>
/// <param name="FromRule">True when the paper's rule found it; false for the round(L/6)-1 fallback.</param>
/// <param name="Reason">Why.</param>
/// <param name="DeltaFfn">ΔH_FFN per block: mean H(F^k) - mean H(Y^k) over the generated tokens, nats.</param>
/// <param name="FfnEntropy">Mean H(F^k) per block.</param>
/// <param name="FfnInputEntropy">Mean H(Y^k) per block.</param>
/// <param name="LayerEntropy">Mean H(H^k) per block (the internal layer policies).</param>
/// <param name="Prompts">Prompts analyzed.</param>
/// <param name="Tokens">Generated tokens averaged over.</param>
/// <param name="Tau">The rule's threshold.</param>
public sealed record LayerAnalysis(int Layer, bool FromRule, string Reason, double[] DeltaFfn, double[] FfnEntropy, double[] FfnInputEntropy,
    double[] LayerEntropy, int Prompts, long Tokens, double Tau)
{
    /// <summary>The metrics.jsonl line: <c>{"event": "bupo_layer_auto", "layer": k, "delta_ffn": [...], ...}</c>.</summary>
    public string ToJsonLine()
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            w.WriteString("event", "bupo_layer_auto");
            w.WriteNumber("layer", Layer);
            w.WriteString("method", FromRule ? "rule" : "fallback");
            w.WriteString("reason", Reason);
            w.WriteNumber("tau", Tau);
            w.WriteNumber("prompts", Prompts);
            w.WriteNumber("tokens", Tokens);
            Array(w, "delta_ffn", DeltaFfn);
            Array(w, "ffn_entropy", FfnEntropy);
            Array(w, "ffn_input_entropy", FfnInputEntropy);
            Array(w, "layer_entropy", LayerEntropy);
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }

    private static void Array(Utf8JsonWriter w, string name, double[] values)
    {
        w.WriteStartArray(name);
        foreach (var v in values)
            if (double.IsFinite(v)) w.WriteNumberValue(v); else w.WriteNullValue();
        w.WriteEndArray();
    }
}

/// <summary>
/// The boundary-layer analysis (BUPO_SPEC.md §2) on the trainer's model: for sampled responses, the entropies of the
/// FFN module output F^k and its normalized input Y^k under the unembedding (no final norm, temperature 1) at every
/// position that generates a response token, averaged token-weighted; ΔH_FFN = H(F) - H(Y) per block; the layer is
/// <see cref="BoundaryLayerRule.Find"/>'s.
/// </summary>
public static class BoundaryLayerAnalysis
{
    public static LayerAnalysis Run(TransformerModel model, IReadOnlyList<(int[] Prompt, int[] Response)> samples, double tau = BoundaryLayerRule.DefaultTau,
        int maxBatchTokens = 4096, CancellationToken ct = default)
    {
        var L = model.Config.LayerCount;
        var hF = new double[L];
        var hY = new double[L];
        var hH = new double[L];
        long tokens = 0;
        var head = new InternalPolicyHead(model, LensNorm.Identity, 1.0);
        var all = ForwardOptions.AllBlocks(L);
        var usable = samples.Where(s => s.Prompt.Length > 0 && s.Response.Length > 0).ToList();
        using (no_grad())
        {
            var i = 0;
            while (i < usable.Count)
            {
                ct.ThrowIfCancellationRequested();
                var batch = new List<(int[] Prompt, int[] Response)>();
                var maxLen = 0;
                while (i < usable.Count)
                {
                    var len = usable[i].Prompt.Length + usable[i].Response.Length - 1;
                    if (batch.Count > 0 && (long)Math.Max(maxLen, len) * (batch.Count + 1) > maxBatchTokens) break;
                    maxLen = Math.Max(maxLen, len);
                    batch.Add(usable[i++]);
                }
                using var scope = NewDisposeScope();
                var inputs = batch.Select(s => s.Prompt.Concat(s.Response.Take(s.Response.Length - 1)).ToArray()).ToArray();
                var t = inputs.Max(x => x.Length);
                var rows = new List<long>();
                for (var b = 0; b < batch.Count; b++)
                    for (var j = 0; j < batch[b].Response.Length; j++) rows.Add((long)b * t + batch[b].Prompt.Length - 1 + j);
                var gather = tensor(rows.ToArray(), ScalarType.Int64, model.Device);
                using var tb = TokenBatch.Create(inputs, model.Device);
                var fwd = model.Forward(tb, new ForwardOptions { ComputeLogits = false, FfnNormInputs = all, FfnOutputs = all, Residuals = all });
                for (var k = 0; k < L; k++)
                {
                    hF[k] += SumEntropy(head, fwd.FfnOutputs[k], gather);
                    hY[k] += SumEntropy(head, fwd.FfnNormInputs[k], gather);
                    hH[k] += SumEntropy(head, fwd.Residuals[k], gather);
                }
                tokens += rows.Count;
                fwd.Dispose();
            }
        }
        var n = Math.Max(1, tokens);
        var meanF = hF.Select(x => x / n).ToArray();
        var meanY = hY.Select(x => x / n).ToArray();
        var delta = meanF.Zip(meanY, (f, y) => f - y).ToArray();
        var choice = tokens == 0
            ? new BoundaryLayerChoice(BoundaryLayerRule.FallbackLayer(L), false, "no response tokens to analyze; fallback k = round(L/6) - 1")
            : BoundaryLayerRule.Find(delta, tau);
        return new LayerAnalysis(choice.Layer, choice.FromRule, choice.Reason, delta, meanF, meanY, hH.Select(x => x / n).ToArray(),
            usable.Count, tokens, tau);
    }

    private static double SumEntropy(InternalPolicyHead head, Tensor h, Tensor gather)
    {
        var rows = h.reshape(-1, h.shape[^1]).index_select(0, gather);
        return head.Entropy(rows).to_type(ScalarType.Float64).sum().item<double>();
    }
}
