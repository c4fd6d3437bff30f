using System.Text.Json.Serialization;

namespace BuPO.Hybrid.Analysis;

/// <summary>Which internal state a lens entropy was computed from (BUPO_SPEC.md §1-2, 0-based block k).</summary>
public enum LensSite
{
    /// <summary>H^k: the residual stream after block k (llama.cpp l_out-k): the internal layer policy.</summary>
    Layer,
    /// <summary>A^k: the attention module output (after W_o, before the residual add).</summary>
    Attention,
    /// <summary>F^k: the FFN module output (before the residual add).</summary>
    Ffn,
    /// <summary>X^k: the normalized attention input (attn_norm-k, with its weight).</summary>
    AttentionInput,
    /// <summary>Y^k: the normalized FFN input (ffn_norm-k, with its weight).</summary>
    FfnInput,
}

/// <summary>Per-block entropy summary, in nats, averaged over all analyzed positions of all sequences.</summary>
public sealed record LayerEntropy
{
    [JsonPropertyName("index")] public int Index { get; init; }
    /// <summary>Mean entropy of the internal layer policy softmax(N(H^k) U^T).</summary>
    [JsonPropertyName("entropy")] public double Entropy { get; init; }
    /// <summary>Standard deviation over positions of the layer policy entropy.</summary>
    [JsonPropertyName("entropy_std")] public double EntropyStd { get; init; }
    [JsonPropertyName("attention_entropy")] public double AttentionEntropy { get; init; }
    [JsonPropertyName("ffn_entropy")] public double FfnEntropy { get; init; }
    /// <summary>Standard deviation over positions of the attention policy entropy.</summary>
    [JsonPropertyName("attention_entropy_std")] public double AttentionEntropyStd { get; init; }
    /// <summary>Standard deviation over positions of the FFN policy entropy.</summary>
    [JsonPropertyName("ffn_entropy_std")] public double FfnEntropyStd { get; init; }
    [JsonPropertyName("attention_input_entropy")] public double AttentionInputEntropy { get; init; }
    [JsonPropertyName("ffn_input_entropy")] public double FfnInputEntropy { get; init; }
    /// <summary>ΔH_Layer = H(H^k) - H(H^{k-1}); for block 0, H^{-1} is the token embedding.</summary>
    [JsonPropertyName("delta_layer")] public double DeltaLayer { get; init; }
    /// <summary>ΔH_ATTN = H(A^k) - H(X^k).</summary>
    [JsonPropertyName("delta_attention")] public double DeltaAttention { get; init; }
    /// <summary>ΔH_FFN = H(F^k) - H(Y^k).</summary>
    [JsonPropertyName("delta_ffn")] public double DeltaFfn { get; init; }
}

/// <summary>The result of <c>bupo-hybrid analyze</c>; serialized as the documented, stable JSON.</summary>
public sealed record AnalysisResult
{
    [JsonPropertyName("model")] public required string Model { get; init; }
    [JsonPropertyName("architecture")] public required string Architecture { get; init; }
    [JsonPropertyName("n_layer")] public int NLayer { get; init; }
    /// <summary>"none" (BuPO's internal policy) or "final" (logit lens).</summary>
    [JsonPropertyName("norm")] public required string Norm { get; init; }
    /// <summary>"llama" (eval-callback captures) or "torch" (the trainer model).</summary>
    [JsonPropertyName("engine")] public required string Engine { get; init; }
    /// <summary>Exactly the token ids analyzed, one list per sequence, BOS included when the model adds it.</summary>
    [JsonPropertyName("token_ids")] public required IReadOnlyList<int[]> TokenIds { get; init; }
    /// <summary>Prompt length of each sequence in <see cref="TokenIds"/> (the rest is the generated response).</summary>
    [JsonPropertyName("prompt_lengths")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<int>? PromptLengths { get; init; }
    [JsonPropertyName("layers")] public required IReadOnlyList<LayerEntropy> Layers { get; init; }
    /// <summary>Mean entropy of the final policy (final norm and unembedding, temperature 1).</summary>
    [JsonPropertyName("final_entropy")] public double FinalEntropy { get; init; }
    /// <summary>Mean entropy of the token embedding's lens (H^{-1}), the base of block 0's ΔH_Layer.</summary>
    [JsonPropertyName("embedding_entropy")] public double EmbeddingEntropy { get; init; }
    /// <summary>The paper's boundary layer (0-based), see <see cref="BoundaryLayerRule"/>.</summary>
    [JsonPropertyName("boundary_layer")] public int BoundaryLayer { get; init; }
    /// <summary>How the boundary layer was chosen ("rule" or "fallback") and why.</summary>
    [JsonPropertyName("boundary_layer_reason")] public string BoundaryLayerReason { get; init; } = "";
    /// <summary>Which positions were analyzed: all, prompt or response.</summary>
    [JsonPropertyName("positions")] public string Positions { get; init; } = "all";
    /// <summary>Number of positions averaged over.</summary>
    [JsonPropertyName("position_count")] public long PositionCount { get; init; }
    /// <summary>
    /// Per-position layer-policy entropies [sequence][analyzed position][i] when --per-token was given: value i belongs to
    /// block <c>layers[i].index</c>; positions are the selected ones, in order.
    /// </summary>
    [JsonPropertyName("per_token")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<float[][]>? PerToken { get; init; }
}
