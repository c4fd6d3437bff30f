using BuPO.Hybrid.Gguf;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace BuPO.Hybrid.Model;

/// <summary>
/// A llama / qwen2 / qwen3 decoder holding full-precision weights as TorchSharp parameters, loaded from a GGUF file.
/// The math follows llama.cpp's graphs (src/models/llama.cpp, qwen2.cpp, qwen3.cpp): pre-norm blocks with RMSNorm
/// (norm, then multiply by the weight), RoPE (NORM pairs for llama, NEOX halves for qwen), GQA with consecutive query
/// heads sharing a KV head, attention scale 1/sqrt(head_dim), SwiGLU FFN, final RMSNorm and the unembedding
/// (output.weight, or token_embd.weight when tied). Every GGUF tensor is exactly one parameter
/// (<see cref="GgufParameters"/>), so an export writes the same names, shapes and order back.
/// The parameters are stored in <see cref="DType"/>; the forward computes in <see cref="ComputeType"/>. When the two differ
/// (mixed precision: float32 masters, bfloat16 compute) each weight is cast to the activations' type where it is used
/// (TorchSharp 0.107 has no autocast), so its gradient flows back through the cast into the float32 master.
/// </summary>
public sealed class TransformerModel : nn.Module
{
    private readonly List<KeyValuePair<string, Parameter>> _ggufParameters = new();
    private readonly BlockWeights[] _blocks;
    private Tensor? _ropeFreqFactors;

    public TransformerConfig Config { get; }
    /// <summary>The GGUF the weights came from (metadata and tokenizer for export).</summary>
    public string SourcePath { get; }
    public Device Device { get; }
    /// <summary>The type the parameters are stored in: what the optimizer updates, checkpoints save and exports read.</summary>
    public ScalarType DType { get; }
    /// <summary>The type of the forward's activations (bfloat16 under mixed precision, else <see cref="DType"/>).</summary>
    public ScalarType ComputeType { get; }

    public Parameter TokenEmbedding { get; private set; } = null!;
    public Parameter OutputNorm { get; private set; } = null!;
    /// <summary>output.weight, null when tied.</summary>
    public Parameter? Output { get; private set; }
    /// <summary>output.bias (some qwen2 files), null when absent.</summary>
    public Parameter? OutputBias { get; private set; }
    /// <summary>E_u: output.weight, or token_embd.weight when tied. [vocab, n_embd].</summary>
    public Parameter Unembedding => Output ?? TokenEmbedding;
    public IReadOnlyList<BlockWeights> Blocks => _blocks;
    /// <summary>Every trainable parameter under its GGUF tensor name, in file order.</summary>
    public IReadOnlyList<KeyValuePair<string, Parameter>> GgufParameters => _ggufParameters;

    private TransformerModel(TransformerConfig config, string sourcePath, Device device, ScalarType dtype, ScalarType computeType) : base(nameof(TransformerModel))
    {
        Config = config; SourcePath = sourcePath; Device = device; DType = dtype; ComputeType = computeType;
        _blocks = new BlockWeights[config.LayerCount];
        for (var i = 0; i < _blocks.Length; i++) _blocks[i] = new BlockWeights { Index = i };
    }

    /// <summary>
    /// Loads a model from a GGUF file, dequantizing every weight to <paramref name="dtype"/> (float32 by default; float64
    /// for gradient checks) on <paramref name="device"/> (CPU by default). The forward computes in
    /// <paramref name="computeType"/> (default: <paramref name="dtype"/>); a float32 <paramref name="dtype"/> with a bfloat16
    /// <paramref name="computeType"/> is mixed precision (see <see cref="TrainPrecision.BFloat16Mixed"/>).
    /// </summary>
    /// <exception cref="BupoException">Unsupported architecture, a missing or misshapen tensor, an unreadable type.</exception>
    public static TransformerModel FromGguf(string path, Device? device = null, ScalarType dtype = ScalarType.Float32, ScalarType? computeType = null)
    {
        TorchRuntime.EnsureInitialized();
        if (dtype is not (ScalarType.Float32 or ScalarType.Float64 or ScalarType.BFloat16 or ScalarType.Float16))
            throw new BupoException($"{path}: parameter type {dtype} is not supported (use float32, bfloat16 or float64)");
        var compute = computeType ?? dtype;
        if (compute is not (ScalarType.Float32 or ScalarType.Float64 or ScalarType.BFloat16 or ScalarType.Float16))
            throw new BupoException($"{path}: compute type {compute} is not supported (use float32, bfloat16 or float64)");
        using var file = GgufFile.Open(path);
        var config = TransformerConfig.FromGguf(file);
        var model = new TransformerModel(config, file.Path, device ?? CPU, dtype, compute);
        try
        {
            model.Load(file);
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>Loads a model stored and computed as <paramref name="precision"/> says (the trainer's <c>--dtype</c>).</summary>
    /// <exception cref="BupoException">Unsupported architecture, a missing or misshapen tensor, an unreadable type.</exception>
    public static TransformerModel FromGguf(string path, Device? device, TrainPrecision precision)
        => FromGguf(path, device, precision.ParameterType(), precision.ComputeType());

    private void Load(GgufFile file)
    {
        var c = Config;
        long d = c.EmbeddingLength, hd = c.HeadDim, nq = c.HeadCount * c.HeadDim, nkv = c.HeadCountKv * c.HeadDim, ff = c.FeedForwardLength;
        foreach (var info in file.Tensors)
        {
            var name = info.Name;
            long[] expected;
            Action<Parameter> assign;
            if (name == "rope_freqs.weight")
            {
                CheckShape(file, info, [hd / 2]);
                _ropeFreqFactors = ReadTensor(file, info, ScalarType.Float64).DetachFromDisposeScope();
                continue;
            }
            if (name.StartsWith("blk.", StringComparison.Ordinal))
            {
                var dot = name.IndexOf('.', 4);
                if (dot < 0 || !int.TryParse(name.AsSpan(4, dot - 4), out var k) || k < 0 || k >= c.LayerCount)
                    throw new BupoException($"{file.Path}: tensor '{name}' names a block outside 0..{c.LayerCount - 1}");
                var suffix = name[(dot + 1)..];
                expected = suffix switch
                {
                    "attn_norm.weight" or "ffn_norm.weight" => [d],
                    "attn_q.weight" => [d, nq],
                    "attn_k.weight" or "attn_v.weight" => [d, nkv],
                    "attn_qkv.weight" => [d, nq + 2 * nkv],
                    "attn_q.bias" => [nq],
                    "attn_k.bias" or "attn_v.bias" => [nkv],
                    "attn_qkv.bias" => [nq + 2 * nkv],
                    "attn_output.weight" => [nq, d],
                    "attn_output.bias" => [d],
                    "attn_q_norm.weight" or "attn_k_norm.weight" => [hd],
                    "ffn_gate.weight" or "ffn_up.weight" => [d, ff],
                    "ffn_down.weight" => [ff, d],
                    "ffn_gate.bias" or "ffn_up.bias" => [ff],
                    "ffn_down.bias" => [d],
                    _ => throw new BupoException($"{file.Path}: tensor '{name}' is not part of a {c.Architecture} block the trainer implements"),
                };
                var block = _blocks[k];
                assign = p => block.Assign(suffix, p);
            }
            else
            {
                expected = name switch
                {
                    "token_embd.weight" => [d, c.VocabSize],
                    "output.weight" => [d, c.VocabSize],
                    "output_norm.weight" => [d],
                    "output.bias" => [c.VocabSize],
                    _ => throw new BupoException($"{file.Path}: tensor '{name}' is not part of a {c.Architecture} model the trainer implements"),
                };
                assign = name switch
                {
                    "token_embd.weight" => p => TokenEmbedding = p,
                    "output.weight" => p => Output = p,
                    "output_norm.weight" => p => OutputNorm = p,
                    _ => p => OutputBias = p,
                };
            }
            CheckShape(file, info, expected);
            using var t = ReadTensor(file, info, DType);
            var param = new Parameter(t, requires_grad: true);
            param.DetachFromDisposeScope();
            register_parameter(name.Replace('.', '_'), param);
            _ggufParameters.Add(new(name, param));
            assign(param);
        }
        if (TokenEmbedding is null) throw new BupoException($"{file.Path}: tensor 'token_embd.weight' is missing");
        if (OutputNorm is null) throw new BupoException($"{file.Path}: tensor 'output_norm.weight' is missing");
        foreach (var b in _blocks)
        {
            var missing = b.Missing().ToList();
            if (c.QkNorm && (b.QNorm is null || b.KNorm is null)) missing.Add("attn_q_norm.weight/attn_k_norm.weight");
            if (missing.Count > 0) throw new BupoException($"{file.Path}: block {b.Index} lacks tensor(s) {string.Join(", ", missing.Select(m => $"blk.{b.Index}.{m}"))}");
        }
        if (c.Architecture == "qwen3" && !c.QkNorm) throw new BupoException($"{file.Path}: qwen3 model without attn_q_norm/attn_k_norm tensors");
    }

    private static void CheckShape(GgufFile file, GgufTensorInfo info, long[] expected)
    {
        if (!info.Shape.SequenceEqual(expected))
            throw new BupoException($"{file.Path}: tensor '{info.Name}' has shape [{string.Join(", ", info.Shape)}], expected [{string.Join(", ", expected)}]");
    }

    private Tensor ReadTensor(GgufFile file, GgufTensorInfo info, ScalarType dtype)
    {
        float[] data;
        try { data = file.ReadTensorFloat(info); }
        catch (NotSupportedException e) { throw new BupoException($"{file.Path}: tensor '{info.Name}' of type {info.Type} cannot be read by the trainer: {e.Message}"); }
        // GGUF ne[0] is the fastest dimension: torch shape is the reverse.
        var shape = info.Shape.Reverse().ToArray();
        using var cpu = torch.tensor(data, shape, ScalarType.Float32);
        return cpu.to(dtype, Device);
    }

    /// <summary>The trainable parameters of blocks 0..k, the embedding and the unembedding: what BuPO's IPA phase updates.</summary>
    public IEnumerable<Parameter> ParametersUpToBlock(int k)
    {
        yield return TokenEmbedding;
        if (Output is not null) yield return Output;
        for (var i = 0; i <= k && i < _blocks.Length; i++)
            foreach (var p in _blocks[i].Parameters()) yield return p;
    }

    /// <summary>All trainable parameters (same set as parameters()), in GGUF order.</summary>
    public IEnumerable<Parameter> TrainableParameters() => _ggufParameters.Select(kv => kv.Value);

    /// <summary>Forward pass over a padded batch.</summary>
    public ForwardResult Forward(TokenBatch batch, ForwardOptions? options = null)
        => Forward(batch.Tokens, batch.Mask, batch.Positions, options);

    /// <summary>
    /// Forward pass. <paramref name="tokens"/> [B, T] token ids; <paramref name="mask"/> [B, T] true on real tokens (null:
    /// all real); <paramref name="positions"/> [B, T] RoPE positions (null: running count of real tokens). Attention is
    /// causal over the row and never reads padded keys, so each sequence gives the logits it gives alone.
    /// </summary>
    public ForwardResult Forward(Tensor tokens, Tensor? mask, Tensor? positions, ForwardOptions? options = null)
    {
        if (tokens.dim() != 2) throw new ArgumentException($"tokens must be [B, T], got [{string.Join(", ", tokens.shape)}]", nameof(tokens));
        return ForwardCore(tokens, options, tok =>
        {
            long b = tok.shape[0], t = tok.shape[1];
            var m = mask is null ? ones(b, t, ScalarType.Bool, Device) : OnDevice(mask, ScalarType.Bool);
            var pos = positions is null ? m.to_type(ScalarType.Int64).cumsum(1).sub(ScalarConstants.One).clamp_min(ScalarConstants.Zero) : OnDevice(positions, ScalarType.Int64);
            return AttentionContext.Create(this, m, pos);
        });
    }

    /// <summary>
    /// Shared-prefix forward over a packed <see cref="PrefixGroupBatch"/>: every hidden state is [1, N, d] in the batch's
    /// flat order (<see cref="PrefixGroupBatch.PredictorIndex"/> finds the row that predicts a continuation token). The
    /// result equals running each prefix + suffix alone.
    /// </summary>
    public ForwardResult Forward(PrefixGroupBatch batch, ForwardOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(batch);
        return ForwardCore(batch.Tokens, options, _ => AttentionContext.CreateGrouped(this, batch, OnDevice(batch.Positions, ScalarType.Int64)));
    }

    private ForwardResult ForwardCore(Tensor tokens, ForwardOptions? options, Func<Tensor, AttentionContext> attention)
    {
        options ??= ForwardOptions.Default;
        var c = Config;
        var last = options.StopAfterBlock ?? c.LayerCount - 1;
        if (last < 0 || last >= c.LayerCount) throw new ArgumentOutOfRangeException(nameof(options), $"StopAfterBlock {last} is outside 0..{c.LayerCount - 1}");
        foreach (var (what, set) in new[] { ("Residuals", options.Residuals), ("AttnNormInputs", options.AttnNormInputs), ("AttnOutputs", options.AttnOutputs),
                     ("FfnInputs", options.FfnInputs), ("FfnNormInputs", options.FfnNormInputs), ("FfnOutputs", options.FfnOutputs) })
            if (set.Any(k => k < 0 || k > last))
                throw new ArgumentOutOfRangeException(nameof(options), $"{what} asks for block(s) {string.Join(", ", set.Where(k => k < 0 || k > last))}, outside the blocks that run (0..{last})");
        var result = new ForwardResult { LastBlock = last };
        using (NewDisposeScope())
        {
            var b = tokens.shape[0];
            var t = tokens.shape[1];
            var tok = OnDevice(tokens, ScalarType.Int64);
            var attn = attention(tok);

            // Rows are selected from the master, then cast: only the looked-up rows are converted.
            var h = As(TokenEmbedding.index_select(0, tok.flatten()), ComputeType).view(b, t, c.EmbeddingLength);
            if (options.CaptureEmbeddings) result.Embeddings = h;
            var checkpoint = options.GradientCheckpointing && is_grad_enabled();
            for (var k = 0; k <= last; k++)
            {
                if (checkpoint && h.requires_grad && !options.HasInnerCapture(k))
                    h = BlockCheckpoint.Run(this, k, h, attn);
                else
                    h = RunBlock(k, h, attn, result, options);
                if (options.Residuals.Contains(k)) result.Residuals[k] = h;
            }
            result.LastHidden = h;
            if (last == c.LayerCount - 1 && (options.ComputeLogits || options.CaptureFinalNormed))
            {
                var n = RmsNorm(h, OutputNorm, c.RmsEps);
                if (options.CaptureFinalNormed) result.FinalNormed = n;
                if (options.ComputeLogits) result.Logits = Linear(n, Unembedding, OutputBias);
            }
            result.MoveToOuterDisposeScope();
        }
        return result;
    }

    /// <summary>Runs block k on the residual <paramref name="h"/>, storing the captures <paramref name="options"/> asks for.</summary>
    internal Tensor RunBlock(int k, Tensor h, AttentionContext a, ForwardResult? result, ForwardOptions? options)
    {
        var w = _blocks[k];
        var eps = Config.RmsEps;
        var x = RmsNorm(h, w.AttnNorm, eps);
        var attnOut = Attention(w, x, a);
        var mres = h.add(attnOut, ScalarConstants.One);
        var y = RmsNorm(mres, w.FfnNorm, eps);
        var f = FeedForward(w, y);
        var outp = mres.add(f, ScalarConstants.One);
        if (result is not null && options is not null)
        {
            if (options.AttnNormInputs.Contains(k)) result.AttnNormInputs[k] = x;
            if (options.AttnOutputs.Contains(k)) result.AttnOutputs[k] = attnOut;
            if (options.FfnInputs.Contains(k)) result.FfnInputs[k] = mres;
            if (options.FfnNormInputs.Contains(k)) result.FfnNormInputs[k] = y;
            if (options.FfnOutputs.Contains(k)) result.FfnOutputs[k] = f;
        }
        return outp;
    }

    private Tensor Attention(BlockWeights w, Tensor x, AttentionContext a)
    {
        var c = Config;
        long b = x.shape[0], t = x.shape[1], hd = c.HeadDim, nq = c.HeadCount * hd, nkv = c.HeadCountKv * hd;
        Tensor q, k, v;
        if (w.Wqkv is not null)
        {
            var qkv = Linear(x, w.Wqkv, w.Bqkv);
            q = qkv.narrow(-1, 0, nq);
            k = qkv.narrow(-1, nq, nkv);
            v = qkv.narrow(-1, nq + nkv, nkv);
            if (w.Bqkv is null)
            {
                if (w.Bq is not null) q = q.add(As(w.Bq, q.dtype), ScalarConstants.One);
                if (w.Bk is not null) k = k.add(As(w.Bk, k.dtype), ScalarConstants.One);
                if (w.Bv is not null) v = v.add(As(w.Bv, v.dtype), ScalarConstants.One);
            }
        }
        else
        {
            q = Linear(x, w.Wq!, w.Bq);
            k = Linear(x, w.Wk!, w.Bk);
            v = Linear(x, w.Wv!, w.Bv);
        }
        q = q.view(b, t, c.HeadCount, hd);
        k = k.view(b, t, c.HeadCountKv, hd);
        v = v.view(b, t, c.HeadCountKv, hd);
        if (w.QNorm is not null) q = RmsNorm(q, w.QNorm, c.RmsEps);
        if (w.KNorm is not null) k = RmsNorm(k, w.KNorm, c.RmsEps);
        q = a.ApplyRope(q.transpose(1, 2));
        k = a.ApplyRope(k.transpose(1, 2));
        v = v.transpose(1, 2);
        if (c.GqaGroup > 1)
        {
            k = k.repeat_interleave(c.GqaGroup, 1);
            v = v.repeat_interleave(c.GqaGroup, 1);
        }
        var o = a.Grouped is { } g
            ? GroupedAttention(g, q, k, v)
            : a.Mask is null
                ? F.scaled_dot_product_attention(q, k, v, is_casual: true)
                : F.scaled_dot_product_attention(q, k, v, a.Mask);
        o = o.transpose(1, 2).reshape(b, t, nq);
        return Linear(o, w.Wo, w.Bo);
    }

    /// <summary>
    /// Attention over a packed <see cref="PrefixGroupBatch"/>: q, k, v [1, H, N, d] in flat order. Prefixes attend causally
    /// to themselves; each suffix row attends to its prefix's keys and values (shared, not recomputed) and causally to its
    /// own. Returns [1, H, N, d] in flat order.
    /// </summary>
    private static Tensor GroupedAttention(PrefixGroupBatch g, Tensor q, Tensor k, Tensor v)
    {
        var h = q.shape[1];
        var d = q.shape[3];
        Tensor Rows(Tensor x, Tensor slots, long rows, long width) => x.select(0, 0).index_select(1, slots).view(h, rows, width, d).transpose(0, 1);
        var kp = Rows(k, g.PrefixSlots, g.PrefixRows, g.PrefixWidth);
        var vp = Rows(v, g.PrefixSlots, g.PrefixRows, g.PrefixWidth);
        var op = F.scaled_dot_product_attention(Rows(q, g.PrefixSlots, g.PrefixRows, g.PrefixWidth), kp, vp, g.PrefixMask);
        var parts = new List<Tensor> { op.transpose(0, 1).reshape(h, (long)g.PrefixRows * g.PrefixWidth, d) };
        if (g.SuffixRows > 0)
        {
            var ks = cat([kp.index_select(0, g.SuffixOwner), Rows(k, g.SuffixSlots, g.SuffixRows, g.SuffixWidth)], 2);
            var vs = cat([vp.index_select(0, g.SuffixOwner), Rows(v, g.SuffixSlots, g.SuffixRows, g.SuffixWidth)], 2);
            var os = F.scaled_dot_product_attention(Rows(q, g.SuffixSlots, g.SuffixRows, g.SuffixWidth), ks, vs, g.SuffixMask!);
            parts.Add(os.transpose(0, 1).reshape(h, (long)g.SuffixRows * g.SuffixWidth, d));
        }
        return cat(parts, 1).index_select(1, g.Unpack).unsqueeze(0);
    }

    private static Tensor FeedForward(BlockWeights w, Tensor y)
    {
        var gate = Linear(y, w.Gate, w.GateB);
        var up = Linear(y, w.Up, w.UpB);
        return Linear(F.silu(gate) * up, w.Down, w.DownB);
    }

    /// <summary>x · wᵀ + b with the weight and bias in x's type (cast copies under mixed precision; no-ops otherwise).</summary>
    internal static Tensor Linear(Tensor x, Tensor w, Tensor? b) => F.linear(x, As(w, x.dtype), b is null ? null : As(b, x.dtype));

    /// <summary>
    /// <paramref name="t"/> in <paramref name="type"/>: the tensor itself when it already is, else a differentiable cast
    /// (its gradient returns to <paramref name="t"/> in t's own type, which is how float32 masters get their gradients).
    /// </summary>
    internal static Tensor As(Tensor t, ScalarType type) => t.dtype == type ? t : t.to_type(type);

    /// <summary>
    /// ggml_rms_norm followed by the weight: x / sqrt(mean(x²) + eps) · w (statistics in float32 for 16-bit x; the weight is
    /// cast to x's type, so a float32 master multiplies bf16 activations as its bf16 copy).
    /// </summary>
    public static Tensor RmsNorm(Tensor x, Tensor weight, double eps)
    {
        var wide = x.dtype is ScalarType.BFloat16 or ScalarType.Float16;
        var xf = wide ? x.to_type(ScalarType.Float32) : x;
        using var e = eps.ToScalar(); // held: TorchSharp 0.107 leaves implicitly converted Scalars to the GC finalizer
        var n = xf * xf.pow(ScalarConstants.Two).mean([-1L], keepdim: true).add(e, ScalarConstants.One).rsqrt();
        if (wide) n = n.to_type(x.dtype);
        return n * As(weight, n.dtype);
    }

    /// <summary>RoPE frequency divisors (rope_freqs.weight), or null.</summary>
    internal Tensor? RopeFreqFactors => _ropeFreqFactors;

    private Tensor OnDevice(Tensor t, ScalarType dtype)
    {
        if (t.device_type == Device.type && t.device_index == Device.index && t.dtype == dtype) return t;
        return t.to(dtype, Device);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _ropeFreqFactors?.Dispose();
            _ropeFreqFactors = null;
        }
        base.Dispose(disposing);
    }
}
