using TorchSharp;
using static TorchSharp.torch;

namespace BuPO.Hybrid.Model;

/// <summary>Where padding goes in a <see cref="TokenBatch"/>.</summary>
public enum PaddingSide
{
    /// <summary>Tokens first, padding after (the fast path: plain causal attention, no explicit mask).</summary>
    Right,
    /// <summary>Padding first, tokens after (an explicit [B, T, T] mask is built).</summary>
    Left,
}

/// <summary>
/// A padded batch of variable-length token sequences: <see cref="Tokens"/> [B, T] int64, <see cref="Mask"/> [B, T] bool
/// (true on real tokens), <see cref="Positions"/> [B, T] int64 (0-based position within its own sequence; 0 on padding).
/// </summary>
public sealed class TokenBatch : IDisposable
{
    public Tensor Tokens { get; }
    public Tensor Mask { get; }
    public Tensor Positions { get; }
    /// <summary>Length of each sequence.</summary>
    public IReadOnlyList<int> Lengths { get; }
    /// <summary>Offset of each sequence's first token in its row (0 for right padding).</summary>
    public IReadOnlyList<int> Offsets { get; }
    public PaddingSide Side { get; }
    public int BatchSize => Lengths.Count;
    public int MaxLength { get; }

    /// <summary>Wraps existing tensors (the caller keeps ownership unless <paramref name="owns"/>).</summary>
    public TokenBatch(Tensor tokens, Tensor mask, Tensor positions, IReadOnlyList<int> lengths, IReadOnlyList<int> offsets, PaddingSide side, bool owns = true)
    {
        Tokens = tokens; Mask = mask; Positions = positions; Lengths = lengths; Offsets = offsets; Side = side; _owns = owns;
        MaxLength = (int)tokens.shape[1];
    }

    private readonly bool _owns;

    /// <summary>Pads <paramref name="sequences"/> into one batch on <paramref name="device"/>.</summary>
    public static TokenBatch Create(IReadOnlyList<IReadOnlyList<int>> sequences, Device? device = null, PaddingSide side = PaddingSide.Right, int padToken = 0)
    {
        ArgumentNullException.ThrowIfNull(sequences);
        if (sequences.Count == 0) throw new ArgumentException("empty batch", nameof(sequences));
        var b = sequences.Count;
        var t = Math.Max(1, sequences.Max(s => s.Count));
        var tokens = new long[b * t];
        var mask = new bool[b * t];
        var pos = new long[b * t];
        var offsets = new int[b];
        for (var i = 0; i < b; i++)
        {
            var s = sequences[i];
            var off = side == PaddingSide.Left ? t - s.Count : 0;
            offsets[i] = off;
            for (var j = 0; j < t; j++) tokens[i * t + j] = padToken;
            for (var j = 0; j < s.Count; j++)
            {
                tokens[i * t + off + j] = s[j];
                mask[i * t + off + j] = true;
                pos[i * t + off + j] = j;
            }
        }
        device ??= CPU;
        return new TokenBatch(
            torch.tensor(tokens, [b, t], ScalarType.Int64, device),
            torch.tensor(mask, [b, t], ScalarType.Bool, device),
            torch.tensor(pos, [b, t], ScalarType.Int64, device),
            sequences.Select(s => s.Count).ToArray(), offsets, side);
    }

    /// <summary>Convenience overload for arrays.</summary>
    public static TokenBatch Create(IReadOnlyList<int[]> sequences, Device? device = null, PaddingSide side = PaddingSide.Right, int padToken = 0)
        => Create(sequences.Select(s => (IReadOnlyList<int>)s).ToArray(), device, side, padToken);

    public void Dispose()
    {
        if (!_owns) return;
        Tokens.Dispose(); Mask.Dispose(); Positions.Dispose();
    }
}
