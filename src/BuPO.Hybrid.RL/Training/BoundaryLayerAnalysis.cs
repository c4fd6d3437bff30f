using System.Text;
using System.Text.Json;
using BuPO.Hybrid.Analysis;
using BuPO.Hybrid.Model;

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
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
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
/// The boundary-layer analysis (BUPO_SPEC.md §2) behind <c>--bupo-layer auto</c>, run by the analyze library
/// (<see cref="InternalEntropyAnalyzer.Analyze"/>, torch engine on the trainer's own model, no final norm, temperature 1)
/// over sampled responses: the entropies at every position that generates a response token, averaged token-weighted;
/// ΔH_FFN = H(F) - H(Y) per block; the layer is the paper's rule's (<see cref="BoundaryLayerRule"/>).
/// </summary>
public static class BoundaryLayerAnalysis
{
    public static LayerAnalysis Run(TransformerModel model, IReadOnlyList<(int[] Prompt, int[] Response)> samples, double tau = BoundaryLayerRule.DefaultTau,
        string device = "cpu", CancellationToken ct = default)
    {
        var L = model.Config.LayerCount;
        var usable = samples.Where(s => s.Prompt.Length > 0 && s.Response.Length > 0).ToList();
        if (usable.Count == 0)
        {
            var fb = BoundaryLayerRule.FallbackLayer(L);
            var nan = Enumerable.Repeat(double.NaN, L).ToArray();
            return new LayerAnalysis(fb, false, "no response tokens to analyze; fallback k = round(L/6) - 1", nan, nan, nan, nan, 0, 0, tau);
        }
        var result = InternalEntropyAnalyzer.Analyze(new AnalyzeOptions
        {
            Model = model,
            Engine = AnalysisEngine.Torch,
            Norm = LensNorm.Identity,
            Positions = AnalysisPositions.Response,
            Tau = tau,
            Device = device,
        }, usable.Select(s => new AnalysisSequence(s.Prompt.Concat(s.Response).ToArray(), s.Prompt.Length)).ToArray(), cancellation: ct);
        var layers = result.Layers.OrderBy(l => l.Index).ToArray();
        var fromRule = result.BoundaryLayerReason.StartsWith("rule", StringComparison.Ordinal);
        return new LayerAnalysis(result.BoundaryLayer, fromRule, result.BoundaryLayerReason,
            layers.Select(l => l.DeltaFfn).ToArray(), layers.Select(l => l.FfnEntropy).ToArray(), layers.Select(l => l.FfnInputEntropy).ToArray(),
            layers.Select(l => l.Entropy).ToArray(), usable.Count, result.PositionCount, tau);
    }
}
