using System.Runtime.InteropServices;
using System.Text;
using BuPO.Hybrid.Llama.Native;

namespace BuPO.Hybrid.Llama;

/// <summary>One captured tensor: <paramref name="Data"/> is row-major [Rows x Cols] (Cols = ne[0], e.g. n_embd; Rows = positions).</summary>
public readonly record struct ProbeTensor(float[] Data, int Rows, int Cols)
{
    /// <summary>Row <paramref name="row"/> (one position).</summary>
    public ReadOnlySpan<float> Row(int row) => Data.AsSpan(row * Cols, Cols);
}

/// <summary>
/// Captures named intermediate tensors of llama.cpp's compute graph through the eval callback (<c>cb_eval</c>).
/// Names are as llama.cpp's graph builders give them: <c>l_out-N</c> (residual stream after block N),
/// <c>attn_norm-N</c>, <c>attn_out-N</c> (llama graph only), <c>ffn_inp-N</c>, <c>ffn_norm-N</c>, <c>ffn_out-N</c>,
/// <c>embd</c>, <c>result_norm</c>, <c>result_output</c>.
/// </summary>
/// <remarks>
/// Pass the probe in <see cref="LlamaContextOptions.Probe"/>; the callback is installed only when at least one name
/// is requested. Each <see cref="LlamaContext.Decode"/> starts a fresh capture; F32, F16 and BF16 tensors are
/// copied (<c>ggml_backend_tensor_get</c>) into float arrays laid out [positions x ne0]. When llama.cpp splits the
/// batch into several micro-batches (n_tokens &gt; n_ubatch) the rows of each are appended in order: batch order
/// when the context uses the unified KV cache (the default) or holds one sequence (the non-unified cache with
/// several sequences regroups tokens by sequence).
/// <para>Request logits for every position you want to see in the last block's tensors and in <c>result_norm</c>:
/// llama.cpp keeps only the rows of the requested outputs there (<c>inp_out_ids</c>).</para>
/// <para>Every requested tensor splits the graph and synchronizes the device: keep probes off the rollout hot path.</para>
/// </remarks>
public sealed unsafe class TensorProbe
{
    private readonly HashSet<string> _names;
    private readonly Dictionary<string, Capture> _captures = new(StringComparer.Ordinal);
    private Exception? _error;
    private bool _layoutChecked;

    /// <summary>Creates a probe for the given tensor names.</summary>
    public TensorProbe(IEnumerable<string> names)
    {
        _names = new HashSet<string>(names, StringComparer.Ordinal);
        foreach (var n in _names)
            if (string.IsNullOrEmpty(n) || Encoding.UTF8.GetByteCount(n) >= GgmlTensor.MaxName)
                throw new ArgumentException($"invalid tensor name '{n}'", nameof(names));
    }

    /// <summary>Creates a probe for the given tensor names.</summary>
    public TensorProbe(params string[] names) : this((IEnumerable<string>)names) { }

    /// <summary>The requested names.</summary>
    public IReadOnlyCollection<string> Names => _names;

    /// <summary>True when no name is requested (the context then installs no callback).</summary>
    public bool IsEmpty => _names.Count == 0;

    /// <summary>Names captured by the last decode.</summary>
    public IReadOnlyCollection<string> Captured => _captures.Keys;

    /// <summary>The tensor captured by the last decode.</summary>
    /// <exception cref="KeyNotFoundException">Not requested, or the graph has no node of that name.</exception>
    public ProbeTensor Get(string name) =>
        TryGet(name, out var t) ? t
        : throw new KeyNotFoundException(_names.Contains(name)
            ? $"tensor '{name}' was not captured by the last decode (the model's graph has no node of that name)"
            : $"tensor '{name}' was not requested from this probe");

    /// <summary>The tensor captured by the last decode, if any.</summary>
    public bool TryGet(string name, out ProbeTensor tensor)
    {
        if (_captures.TryGetValue(name, out var c))
        {
            tensor = c.ToTensor();
            return true;
        }
        tensor = default;
        return false;
    }

    internal void BeginDecode()
    {
        _captures.Clear();
        _error = null;
    }

    /// <summary>The exception raised inside the callback during the last decode (the compute was cancelled).</summary>
    internal Exception? Error => _error;

    private sealed class Capture(int cols)
    {
        public readonly int Cols = cols;
        public float[] Data = new float[Math.Max(cols, 1) * 16];
        public int Rows;
        public ProbeTensor? Cached;

        public Span<float> AppendRows(int rows)
        {
            long need = (long)(Rows + rows) * Cols;
            if (need > Array.MaxLength) throw new InvalidOperationException("probe capture too large");
            if (need > Data.Length) Array.Resize(ref Data, (int)Math.Min(Array.MaxLength, Math.Max(need, (long)Data.Length * 2)));
            var span = Data.AsSpan(Rows * Cols, rows * Cols);
            Rows += rows;
            Cached = null;
            return span;
        }

        public ProbeTensor ToTensor() => Cached ??= new ProbeTensor(Data.Length == Rows * Cols ? Data : Data.AsSpan(0, Rows * Cols).ToArray(), Rows, Cols);
    }

    // ---- the callback ----

    [UnmanagedCallersOnly]
    internal static byte OnEval(GgmlTensor* t, byte ask, void* userData)
    {
        var probe = (TensorProbe)GCHandle.FromIntPtr((nint)userData).Target!;
        try
        {
            if (!probe._layoutChecked) probe.CheckLayout(t);
            var name = NameOf(t);
            if (ask != 0) return probe._names.Contains(name) ? (byte)1 : (byte)0;
            if (probe._names.Contains(name)) probe.Receive(t, name);
            return 1;
        }
        catch (Exception e)
        {
            probe._error ??= e;
            return 0; // cancels the compute; Decode rethrows
        }
    }

    private void CheckLayout(GgmlTensor* t)
    {
        // Our ggml_tensor mirror must put name where ggml does, and ne[] must multiply to ggml's element count.
        if (LlamaNative.ggml_get_name(t) != t->name || LlamaNative.ggml_nelements(t) != t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3])
            throw new BupoException("ggml_tensor layout mismatch: the llama.cpp libraries are not the release bupo-hybrid binds");
        _layoutChecked = true;
    }

    private static string NameOf(GgmlTensor* t)
    {
        var span = new ReadOnlySpan<byte>(t->name, GgmlTensor.MaxName);
        int len = span.IndexOf((byte)0);
        return Encoding.UTF8.GetString(len < 0 ? span : span[..len]);
    }

    private void Receive(GgmlTensor* t, string name)
    {
        long cols = t->ne[0];
        long rows = t->ne[1] * t->ne[2] * t->ne[3];
        if (cols <= 0 || rows <= 0) return;
        if (cols > int.MaxValue || rows * cols > Array.MaxLength) throw new InvalidOperationException($"tensor '{name}' is too large to capture");
        if (!_captures.TryGetValue(name, out var cap)) _captures[name] = cap = new Capture((int)cols);
        else if (cap.Cols != cols) throw new InvalidOperationException($"tensor '{name}' changed width between micro-batches ({cap.Cols} then {cols})");
        var dst = cap.AppendRows((int)rows);

        int elemSize = t->type switch
        {
            GgmlTypes.F32 => 4,
            GgmlTypes.F16 or GgmlTypes.BF16 => 2,
            _ => throw new NotSupportedException($"tensor '{name}' has ggml type {t->type}; the probe reads F32, F16 and BF16"),
        };
        bool contiguous = t->nb[0] == (ulong)elemSize && t->nb[1] == t->nb[0] * (ulong)t->ne[0]
                          && t->nb[2] == t->nb[1] * (ulong)t->ne[1] && t->nb[3] == t->nb[2] * (ulong)t->ne[2];
        nuint nbytes = LlamaNative.ggml_nbytes(t);
        if (contiguous && t->type == GgmlTypes.F32)
        {
            fixed (float* d = dst) LlamaNative.ggml_backend_tensor_get(t, d, 0, (nuint)(dst.Length * 4));
            return;
        }
        var raw = new byte[(int)nbytes];
        fixed (byte* r = raw) LlamaNative.ggml_backend_tensor_get(t, r, 0, nbytes);
        int k = 0;
        for (long i3 = 0; i3 < t->ne[3]; i3++)
            for (long i2 = 0; i2 < t->ne[2]; i2++)
                for (long i1 = 0; i1 < t->ne[1]; i1++)
                {
                    long rowOff = (long)(i1 * (long)t->nb[1] + i2 * (long)t->nb[2] + i3 * (long)t->nb[3]);
                    for (long i0 = 0; i0 < cols; i0++)
                    {
                        int off = (int)(rowOff + i0 * (long)t->nb[0]);
                        dst[k++] = t->type switch
                        {
                            GgmlTypes.F32 => BitConverter.ToSingle(raw, off),
                            GgmlTypes.F16 => (float)BitConverter.ToHalf(raw, off),
                            _ => BitConverter.Int32BitsToSingle(BitConverter.ToUInt16(raw, off) << 16),
                        };
                    }
                }
    }
}
