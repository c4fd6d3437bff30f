using BuPO.Hybrid.Llama;
using BuPO.Hybrid.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace BuPO.Hybrid.Analysis;

/// <summary>Which states an engine must produce: residuals of <see cref="ResidualBlocks"/>, module states of <see cref="ModuleBlocks"/>.</summary>
internal sealed class StateRequest
{
    public StateRequest(int nLayer, IReadOnlyList<int> blocks)
    {
        LayerCount = nLayer;
        ModuleBlocks = new SortedSet<int>(blocks);
        // ΔH_Layer of block k needs H^{k-1}; the final policy needs H^{L-1}.
        var residuals = new SortedSet<int>(blocks) { nLayer - 1 };
        foreach (var k in blocks) if (k > 0) residuals.Add(k - 1);
        ResidualBlocks = residuals;
    }

    public int LayerCount { get; }
    /// <summary>Blocks whose X, A, Y, F are needed (the analyzed blocks).</summary>
    public IReadOnlySet<int> ModuleBlocks { get; }
    /// <summary>Blocks whose output residual H^k is needed.</summary>
    public IReadOnlySet<int> ResidualBlocks { get; }
}

/// <summary>The states of positions [Start, Start + Length) of one sequence, each [Length, d] (any device, any float type).</summary>
internal sealed class StateChunk : IDisposable
{
    public required int Start { get; init; }
    public required int Length { get; init; }
    /// <summary>Token embeddings H^{-1} (llama.cpp embd).</summary>
    public required Tensor Embedding { get; init; }
    /// <summary>Residuals, attention/FFN inputs and outputs by (site, block).</summary>
    public Dictionary<(LensSite Site, int Block), Tensor> States { get; } = new();

    public void Dispose()
    {
        Embedding.Dispose();
        foreach (var t in States.Values) t.Dispose();
    }
}

/// <summary>Produces the internal states of a sequence, chunk by chunk.</summary>
internal interface IStateEngine : IDisposable
{
    /// <summary>The states of <paramref name="tokens"/> (a whole sequence, positions 0..n-1); each chunk is disposed by the caller.</summary>
    IEnumerable<StateChunk> Run(int[] tokens);
}

/// <summary>States from the TorchSharp trainer model: one forward pass per sequence with the captures asked for.</summary>
internal sealed class TorchStateEngine(TransformerModel model, StateRequest request) : IStateEngine
{
    public IEnumerable<StateChunk> Run(int[] tokens)
    {
        StateChunk chunk;
        using (no_grad())
        using (NewDisposeScope())
        {
            using var batch = TokenBatch.Create([tokens], model.Device);
            var mods = request.ModuleBlocks;
            using var r = model.Forward(batch, new ForwardOptions
            {
                ComputeLogits = false, CaptureEmbeddings = true, Residuals = request.ResidualBlocks,
                AttnNormInputs = mods, AttnOutputs = mods, FfnNormInputs = mods, FfnOutputs = mods,
            });
            Tensor Keep(Tensor t) => t.select(0, 0).DetachFromDisposeScope();
            chunk = new StateChunk { Start = 0, Length = tokens.Length, Embedding = Keep(r.Embeddings!) };
            foreach (var k in request.ResidualBlocks) chunk.States[(LensSite.Layer, k)] = Keep(r.Residuals[k]);
            foreach (var k in mods)
            {
                chunk.States[(LensSite.AttentionInput, k)] = Keep(r.AttnNormInputs[k]);
                chunk.States[(LensSite.Attention, k)] = Keep(r.AttnOutputs[k]);
                chunk.States[(LensSite.FfnInput, k)] = Keep(r.FfnNormInputs[k]);
                chunk.States[(LensSite.Ffn, k)] = Keep(r.FfnOutputs[k]);
            }
        }
        yield return chunk;
    }

    public void Dispose() { }
}

/// <summary>
/// States from llama.cpp's compute graph through a <see cref="TensorProbe"/>: the sequence is decoded alone (KV cache
/// cleared first) in chunks of the context's batch size, asking for every position's logits so the last block keeps
/// all rows. Graph names (PLATFORM_NOTES.md): embd, l_out-k, attn_norm-k, ffn_norm-k, ffn_out-k (the FFN output before
/// the add), and attn_out-k in the llama graph; qwen2/qwen3 graphs have no attention-output node, so A^k is
/// ffn_inp-k minus the block's input (l_out-(k-1), or embd for k = 0).
/// </summary>
internal sealed class LlamaStateEngine : IStateEngine
{
    private readonly LlamaContext _ctx;
    private readonly TensorProbe _probe;
    private readonly StateRequest _request;
    private readonly bool _attnOutNode;
    private readonly int _nEmbd;

    public LlamaStateEngine(LlamaModel model, StateRequest request, int maxLength, AnalyzeOptions options)
    {
        _request = request;
        _nEmbd = model.EmbeddingSize;
        _attnOutNode = model.Architecture == "llama";
        var names = new HashSet<string> { "embd" };
        foreach (var k in request.ResidualBlocks) names.Add($"l_out-{k}");
        foreach (var k in request.ModuleBlocks)
        {
            names.Add($"attn_norm-{k}");
            names.Add($"ffn_norm-{k}");
            names.Add($"ffn_out-{k}");
            if (_attnOutNode) names.Add($"attn_out-{k}");
            else
            {
                names.Add($"ffn_inp-{k}");
                if (k > 0) names.Add($"l_out-{k - 1}");
            }
        }
        _probe = new TensorProbe(names);
        var batch = Math.Max(1, Math.Min(options.LlamaBatchSize, maxLength));
        var f32 = options.KvCacheType == Gguf.GgmlType.F32;
        _ctx = LlamaContext.Create(model, new LlamaContextOptions
        {
            ContextSize = Math.Max(maxLength, 16),
            BatchSize = batch,
            UBatchSize = batch,
            MaxSequences = 1,
            Threads = options.Threads,
            Probe = _probe,
            KvCacheType = options.KvCacheType,
            FlashAttention = f32 ? false : null,
        });
    }

    public IEnumerable<StateChunk> Run(int[] tokens)
    {
        _ctx.Clear();
        using var batch = new LlamaBatch(_ctx.BatchSize);
        for (var start = 0; start < tokens.Length; start += _ctx.BatchSize)
        {
            var len = Math.Min(_ctx.BatchSize, tokens.Length - start);
            batch.Clear();
            for (var i = 0; i < len; i++) batch.Add(tokens[start + i], start + i, 0, wantLogits: true);
            _ctx.Decode(batch);
            yield return Collect(start, len);
        }
    }

    private StateChunk Collect(int start, int len)
    {
        Tensor Get(string name)
        {
            if (!_probe.TryGet(name, out var t))
                throw new BupoException($"llama.cpp's graph for this model has no node '{name}': the llama engine cannot read this state (try --engine torch)");
            if (t.Rows != len || t.Cols != _nEmbd)
                throw new BupoException($"llama.cpp node '{name}' was captured as [{t.Rows} x {t.Cols}], expected [{len} x {_nEmbd}]");
            return torch.tensor(t.Data, [len, _nEmbd], ScalarType.Float32);
        }
        var chunk = new StateChunk { Start = start, Length = len, Embedding = Get("embd") };
        try
        {
            foreach (var k in _request.ResidualBlocks) chunk.States[(LensSite.Layer, k)] = Get($"l_out-{k}");
            foreach (var k in _request.ModuleBlocks)
            {
                chunk.States[(LensSite.AttentionInput, k)] = Get($"attn_norm-{k}");
                chunk.States[(LensSite.FfnInput, k)] = Get($"ffn_norm-{k}");
                chunk.States[(LensSite.Ffn, k)] = Get($"ffn_out-{k}");
                if (_attnOutNode) chunk.States[(LensSite.Attention, k)] = Get($"attn_out-{k}");
                else
                {
                    using var m = Get($"ffn_inp-{k}");
                    using var h = k == 0 ? Get("embd") : Get($"l_out-{k - 1}");
                    chunk.States[(LensSite.Attention, k)] = m - h;
                }
            }
            return chunk;
        }
        catch
        {
            chunk.Dispose();
            throw;
        }
    }

    public void Dispose() => _ctx.Dispose();
}
