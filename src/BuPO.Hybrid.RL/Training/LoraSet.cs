using BuPO.Hybrid.Gguf;
using BuPO.Hybrid.Model;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace BuPO.Hybrid.RL.Training;

/// <summary>
/// LoRA adapters on a <see cref="TransformerModel"/>'s linear weights: W = W0 + (alpha / r) · B · A with A [r, in]
/// (initialized uniform ±1/sqrt(in), seeded) and B [out, r] (zeros), as PEFT and llama.cpp define them. The model's own
/// parameter holds the merged W, so the forward pass is unchanged; only the adapted weights keep requires_grad, and after
/// backward <see cref="PropagateGrads"/> turns dL/dW into dL/dA = s·Bᵀ·dL/dW and dL/dB = s·dL/dW·Aᵀ (exact by the chain
/// rule). After each optimizer step <see cref="Merge"/> rewrites W from W0 and the new A, B. <see cref="WriteGguf"/> writes
/// llama.cpp's adapter format (general.type = adapter, adapter.type = lora, adapter.lora.alpha, tensors
/// <c>&lt;base&gt;.lora_a</c> [ggml: in, r] and <c>&lt;base&gt;.lora_b</c> [ggml: r, out]), which the sampler applies on
/// top of the unchanged base GGUF.
/// </summary>
public sealed class LoraSet : IDisposable
{
    /// <summary>The linear weights adapted by default (every projection of a block).</summary>
    public static IReadOnlyList<string> DefaultTargets { get; } = ["attn_q", "attn_k", "attn_v", "attn_qkv", "attn_output", "ffn_gate", "ffn_up", "ffn_down"];

    private readonly List<Adapted> _adapted = [];
    private readonly List<KeyValuePair<string, Parameter>> _params = [];

    private sealed record Adapted(string Name, Parameter W, Tensor W0, Parameter A, Parameter B);

    public int Rank { get; }
    public double Alpha { get; }
    public double Scale => Alpha / Rank;
    public string Architecture { get; }

    /// <summary>The trainable LoRA parameters, named <c>&lt;base&gt;.lora_a</c> / <c>.lora_b</c>.</summary>
    public IReadOnlyList<KeyValuePair<string, Parameter>> Parameters => _params;

    /// <summary>Names of the adapted base weights.</summary>
    public IEnumerable<string> AdaptedWeights => _adapted.Select(a => a.Name);

    private LoraSet(int rank, double alpha, string architecture)
    {
        Rank = rank; Alpha = alpha; Architecture = architecture;
    }

    /// <summary>Adds adapters of rank <paramref name="rank"/> to every block weight whose suffix is in <paramref name="targets"/>, and freezes the rest.</summary>
    public static LoraSet Create(TransformerModel model, int rank, double alpha, IReadOnlyList<string>? targets, ulong seed)
    {
        if (rank < 1) throw new BupoException($"--lora-rank must be >= 1, got {rank}");
        targets ??= DefaultTargets;
        var set = new LoraSet(rank, alpha > 0 ? alpha : rank, model.Config.Architecture);
        foreach (var (name, p) in model.GgufParameters)
        {
            p.requires_grad = false;
            if (!name.StartsWith("blk.", StringComparison.Ordinal) || !name.EndsWith(".weight", StringComparison.Ordinal) || p.dim() != 2) continue;
            var suffix = name.Split('.')[2];
            if (!targets.Contains(suffix)) continue;
            long outDim = p.shape[0], inDim = p.shape[1];
            if (rank > Math.Min(outDim, inDim)) throw new BupoException($"--lora-rank {rank} exceeds the dimensions of '{name}' ([{outDim}, {inDim}])");
            var bound = 1.0 / Math.Sqrt(inDim);
            var data = new float[rank * inDim];
            var state = SplitMix64.Derive(seed, (ulong)StableHash(name));
            for (var i = 0; i < data.Length; i++)
            {
                state = SplitMix64.Derive(state, (ulong)i);
                data[i] = (float)(((state >> 11) * (1.0 / (1UL << 53)) * 2 - 1) * bound);
            }
            var a = new Parameter(tensor(data, [rank, inDim]).to(p.dtype, p.device), requires_grad: true);
            var b = new Parameter(zeros([outDim, rank], p.dtype, p.device), requires_grad: true);
            a.DetachFromDisposeScope();
            b.DetachFromDisposeScope();
            Tensor w0;
            using (no_grad()) w0 = p.detach().clone().DetachFromDisposeScope();
            p.requires_grad = true;
            set._adapted.Add(new Adapted(name, p, w0, a, b));
            set._params.Add(new($"{name}.lora_a", a));
            set._params.Add(new($"{name}.lora_b", b));
        }
        if (set._adapted.Count == 0) throw new BupoException($"--lora-targets {string.Join(",", targets)}: no weight of the model matches (block weights: attn_q, attn_k, ..., ffn_down)");
        return set;
    }

    private static long StableHash(string s)
    {
        ulong h = 1469598103934665603UL;
        foreach (var c in s) { h ^= c; h *= 1099511628211UL; }
        return (long)h;
    }

    /// <summary>Moves each adapted weight's gradient to its A and B (and clears it).</summary>
    public void PropagateGrads()
    {
        using var _ = no_grad();
        using var scale = Scale.ToScalar();
        foreach (var x in _adapted)
        {
            var g = x.W.grad;
            if (g is null) continue;
            using (NewDisposeScope())
            {
                x.A.grad = x.B.t().matmul(g).mul(scale).DetachFromDisposeScope();
                x.B.grad = g.matmul(x.A.t()).mul(scale).DetachFromDisposeScope();
            }
            x.W.grad = null;
            g.Dispose();
        }
    }

    /// <summary>Clears the adapted weights' own gradients.</summary>
    public void ClearBaseGrads()
    {
        foreach (var x in _adapted)
        {
            var g = x.W.grad;
            if (g is null) continue;
            x.W.grad = null;
            g.Dispose();
        }
    }

    /// <summary>W = W0 + s · B · A for every adapted weight.</summary>
    public void Merge()
    {
        using var _ = no_grad();
        using var scale = Scale.ToScalar();
        foreach (var x in _adapted)
        {
            using var scope = NewDisposeScope();
            x.W.copy_(x.W0.add(x.B.matmul(x.A), scale));
        }
    }

    /// <summary>Writes the adapters as a llama.cpp LoRA GGUF (F32), atomically.</summary>
    public void WriteGguf(string path)
    {
        var w = new GgufWriter()
            .SetString("general.architecture", Architecture)
            .SetString("general.type", "adapter")
            .SetString("general.name", "bupo-hybrid LoRA")
            .SetString("adapter.type", "lora")
            .SetFloat32("adapter.lora.alpha", (float)Alpha);
        foreach (var x in _adapted)
        {
            // GGUF shapes are ggml's (fastest dimension first): the reverse of torch's.
            w.AddTensor($"{x.Name}.lora_a", [x.A.shape[1], x.A.shape[0]], GgmlType.F32, GgufTensorData.FromFloats(Floats(x.A)));
            w.AddTensor($"{x.Name}.lora_b", [x.B.shape[1], x.B.shape[0]], GgmlType.F32, GgufTensorData.FromFloats(Floats(x.B)));
        }
        try { w.WriteTo(path); }
        catch (IOException e) { throw new BupoException($"{path}: cannot write the LoRA adapter: {e.Message}"); }
    }

    private static ReadOnlyMemory<float> Floats(Tensor t)
    {
        using var scope = NewDisposeScope();
        return t.detach().to(ScalarType.Float32, CPU).contiguous().data<float>().ToArray();
    }

    public void Dispose()
    {
        foreach (var x in _adapted) { x.W0.Dispose(); x.A.Dispose(); x.B.Dispose(); }
        _adapted.Clear();
        _params.Clear();
    }
}
