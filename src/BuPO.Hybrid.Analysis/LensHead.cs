using BuPO.Hybrid.Gguf;
using BuPO.Hybrid.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace BuPO.Hybrid.Analysis;

/// <summary>
/// The unembedding of a model for lens entropies, forward only: H(softmax(N(h) · E_uᵀ)) in nats, computed in chunks of
/// positions so at most [chunk x vocab] logits exist at once. The same arithmetic as
/// <see cref="InternalPolicyHead.Entropy"/> (the output bias only with the final norm; logits widened to float32 after
/// the matmul), without autograd. Built from a loaded <see cref="TransformerModel"/> (its parameters, not copied) or
/// from a GGUF file (only token_embd/output, output_norm and output.bias are read), so the llama.cpp engine needs no
/// torch copy of the whole model. Both engines of <see cref="InternalEntropyAnalyzer"/> use this one class.
/// </summary>
public sealed class LensHead : IDisposable
{
    private readonly bool _owns;

    /// <summary>E_u [vocab, d].</summary>
    public Tensor Unembedding { get; }
    /// <summary>The final RMSNorm weight [d].</summary>
    public Tensor OutputNorm { get; }
    /// <summary>output.bias [vocab], or null.</summary>
    public Tensor? OutputBias { get; }
    /// <summary>RMSNorm epsilon.</summary>
    public double RmsEps { get; }
    /// <summary>Positions per chunk.</summary>
    public int ChunkSize { get; }
    /// <summary>The device of the weights (inputs are moved there).</summary>
    public Device Device => Unembedding.device;

    private LensHead(Tensor u, Tensor norm, Tensor? bias, double eps, int chunk, bool owns)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(chunk);
        Unembedding = u; OutputNorm = norm; OutputBias = bias; RmsEps = eps; ChunkSize = chunk; _owns = owns;
    }

    /// <summary>The head of a loaded trainer model (shares its parameters).</summary>
    public static LensHead FromModel(TransformerModel model, int chunkSize = 1024)
    {
        ArgumentNullException.ThrowIfNull(model);
        return new LensHead(model.Unembedding, model.OutputNorm, model.OutputBias, model.Config.RmsEps, chunkSize, owns: false);
    }

    /// <summary>Reads only the head tensors of a GGUF file (dequantized to float32) onto <paramref name="device"/>.</summary>
    /// <exception cref="BupoException">Unsupported architecture or a missing tensor.</exception>
    public static LensHead FromGguf(string path, Device? device = null, int chunkSize = 1024)
    {
        TorchRuntime.EnsureInitialized();
        using var file = GgufFile.Open(path);
        var config = TransformerConfig.FromGguf(file);
        device ??= CPU;
        Tensor Read(string name, bool required)
        {
            var info = file.FindTensor(name);
            if (info is null)
            {
                if (required) throw new BupoException($"{file.Path}: tensor '{name}' is missing");
                return null!;
            }
            float[] data;
            try { data = file.ReadTensorFloat(info); }
            catch (NotSupportedException e) { throw new BupoException($"{file.Path}: tensor '{name}' of type {info.Type} cannot be read: {e.Message}"); }
            using var cpu = torch.tensor(data, info.Shape.Reverse().ToArray(), ScalarType.Float32);
            return cpu.to(device).DetachFromDisposeScope();
        }
        var u = Read(config.TiedEmbeddings ? "token_embd.weight" : "output.weight", true);
        var norm = Read("output_norm.weight", true);
        var bias = file.FindTensor("output.bias") is null ? null : Read("output.bias", true);
        return new LensHead(u, norm, bias, config.RmsEps, chunkSize, owns: true);
    }

    /// <summary>
    /// Entropy in nats of softmax(N(h) · E_uᵀ (+ b)) for every row of <paramref name="hidden"/> [n, d]: N is the identity
    /// (BuPO's internal policy) or the final RMSNorm (logit lens, with the output bias: on the last block's residual
    /// this is the full policy). Returns a float32 CPU array of n values.
    /// </summary>
    public float[] Entropy(Tensor hidden, LensNorm norm)
    {
        if (hidden.dim() != 2) throw new ArgumentException($"hidden must be [n, d], got [{string.Join(", ", hidden.shape)}]", nameof(hidden));
        var n = hidden.shape[0];
        var result = new float[n];
        if (n == 0) return result;
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var x = hidden.device_type == Device.type && hidden.device_index == Device.index ? hidden : hidden.to(Device);
        if (x.dtype != Unembedding.dtype) x = x.to_type(Unembedding.dtype);
        var bias = norm == LensNorm.Final ? OutputBias : null;
        var wide = Unembedding.dtype == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;
        var outChunks = new List<Tensor>();
        for (long s = 0; s < n; s += ChunkSize)
        {
            using var chunkScope = NewDisposeScope(); // frees each chunk's [len x vocab] logits before the next
            var len = Math.Min(ChunkSize, n - s);
            var h = x.narrow(0, s, len);
            if (norm == LensNorm.Final) h = TransformerModel.RmsNorm(h, OutputNorm, RmsEps);
            var z = nn.functional.linear(h, Unembedding, bias).to_type(wide);
            var logp = z.log_softmax(1);
            outChunks.Add((-(logp.exp() * logp).sum(1)).MoveToOuterDisposeScope());
        }
        var all = cat(outChunks, 0).to_type(ScalarType.Float32).cpu();
        all.data<float>().CopyTo(result);
        return result;
    }

    public void Dispose()
    {
        if (!_owns) return;
        Unembedding.Dispose(); OutputNorm.Dispose(); OutputBias?.Dispose();
    }
}
