using static TorchSharp.torch;

namespace BuPO.Hybrid.Model;

/// <summary>One prompt and the continuations that share it (a GRPO group): the prompt is run once for all of them.</summary>
/// <param name="Prefix">The shared tokens (at least one).</param>
/// <param name="Suffixes">The continuations (each may be empty), each positioned right after the prefix.</param>
public sealed record PrefixGroup(int[] Prefix, IReadOnlyList<int[]> Suffixes);

/// <summary>
/// A packed batch of <see cref="PrefixGroup"/>s for a shared-prefix forward (the idea of Prefix Grouper, arXiv 2506.05433):
/// every token of every prefix and suffix appears once, in one flat row [1, N] with no padding, so the per-token work
/// (norms, projections, FFN) is done once per prompt, not once per response. Only attention sees structure: prefixes
/// attend causally to themselves, and each suffix to its whole prefix and causally to itself, at the positions it
/// would have alone (prefix length + t). Log-probs and gradients equal those of running each prefix + suffix as its
/// own sequence. Flat layout: all prefixes in group order, then all non-empty suffixes in group and suffix order.
/// </summary>
public sealed class PrefixGroupBatch : IDisposable
{
    private readonly int[] _prefixStart;
    private readonly int[][] _suffixStart;

    /// <summary>[1, N] token ids.</summary>
    public Tensor Tokens { get; }
    /// <summary>[1, N] RoPE positions.</summary>
    public Tensor Positions { get; }
    /// <summary>The groups, as given.</summary>
    public IReadOnlyList<PrefixGroup> Groups { get; }
    /// <summary>N: tokens in the flat row.</summary>
    public int TokenCount { get; }

    internal Tensor PrefixSlots { get; }   // [Gp * P] flat index of each padded prefix slot (pads point at 0)
    internal Tensor SuffixSlots { get; }   // [Gs * S] same for suffixes
    internal Tensor SuffixOwner { get; }   // [Gs] prefix row of each suffix row
    internal Tensor PrefixMask { get; }    // [Gp, 1, P, P] bool
    internal Tensor? SuffixMask { get; }   // [Gs, 1, S, P + S] bool, null without suffix rows
    internal Tensor Unpack { get; }        // [N] slot (in prefix slots ++ suffix slots) of each flat token
    internal int PrefixRows { get; }
    internal int PrefixWidth { get; }
    internal int SuffixRows { get; }
    internal int SuffixWidth { get; }

    /// <summary>Packs <paramref name="groups"/> onto <paramref name="device"/>.</summary>
    public PrefixGroupBatch(IReadOnlyList<PrefixGroup> groups, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(groups);
        if (groups.Count == 0) throw new ArgumentException("no groups", nameof(groups));
        if (groups.Any(g => g.Prefix.Length == 0)) throw new ArgumentException("a group has an empty prefix", nameof(groups));
        device ??= CPU;
        Groups = groups;
        var gp = groups.Count;
        var p = groups.Max(g => g.Prefix.Length);
        var suffixRows = groups.SelectMany((g, gi) => g.Suffixes.Select((s, si) => (gi, si, s))).Where(x => x.s.Length > 0).ToArray();
        var gs = suffixRows.Length;
        var s = gs == 0 ? 0 : suffixRows.Max(x => x.s.Length);
        var n = groups.Sum(g => g.Prefix.Length) + suffixRows.Sum(x => x.s.Length);
        TokenCount = n; PrefixRows = gp; PrefixWidth = p; SuffixRows = gs; SuffixWidth = s;

        var tokens = new long[n];
        var positions = new long[n];
        var unpack = new long[n];
        var prefixSlots = new long[gp * p];
        var prefixReal = new bool[gp * p];
        var suffixSlots = new long[gs * s];
        var suffixReal = new bool[gs * s];
        var owner = new long[gs];
        _prefixStart = new int[gp];
        _suffixStart = groups.Select(g => Enumerable.Repeat(-1, g.Suffixes.Count).ToArray()).ToArray();
        var at = 0;
        for (var g = 0; g < gp; g++)
        {
            _prefixStart[g] = at;
            var pre = groups[g].Prefix;
            for (var t = 0; t < pre.Length; t++, at++)
            {
                tokens[at] = pre[t]; positions[at] = t;
                prefixSlots[g * p + t] = at; prefixReal[g * p + t] = true;
                unpack[at] = g * p + t;
            }
        }
        for (var r = 0; r < gs; r++)
        {
            var (g, si, suf) = suffixRows[r];
            owner[r] = g;
            _suffixStart[g][si] = at;
            var plen = groups[g].Prefix.Length;
            for (var t = 0; t < suf.Length; t++, at++)
            {
                tokens[at] = suf[t]; positions[at] = plen + t;
                suffixSlots[r * s + t] = at; suffixReal[r * s + t] = true;
                unpack[at] = (long)gp * p + r * s + t;
            }
        }

        // Query i sees key j when j <= i and j is real; every query also sees itself, so padded rows stay finite
        // (their outputs are never gathered, but a NaN there would poison the backward pass).
        var pm = new bool[gp * p * p];
        for (var g = 0; g < gp; g++)
            for (var i = 0; i < p; i++)
                for (var j = 0; j <= i; j++)
                    pm[(g * p + i) * p + j] = j == i || prefixReal[g * p + j];
        bool[]? sm = null;
        if (gs > 0)
        {
            var w = p + s;
            sm = new bool[gs * s * w];
            for (var r = 0; r < gs; r++)
            {
                var g = (int)owner[r];
                for (var i = 0; i < s; i++)
                {
                    var row = (r * s + i) * w;
                    for (var j = 0; j < p; j++) sm[row + j] = prefixReal[g * p + j];
                    for (var j = 0; j <= i; j++) sm[row + p + j] = j == i || suffixReal[r * s + j];
                }
            }
        }
        Tokens = tensor(tokens, [1, n], ScalarType.Int64, device);
        Positions = tensor(positions, [1, n], ScalarType.Int64, device);
        Unpack = tensor(unpack, ScalarType.Int64, device);
        PrefixSlots = tensor(prefixSlots, ScalarType.Int64, device);
        SuffixSlots = tensor(suffixSlots, ScalarType.Int64, device);
        SuffixOwner = tensor(owner, ScalarType.Int64, device);
        PrefixMask = tensor(pm, [gp, 1, p, p], ScalarType.Bool, device);
        SuffixMask = sm is null ? null : tensor(sm, [gs, 1, s, p + s], ScalarType.Bool, device);
    }

    /// <summary>Flat index of token <paramref name="t"/> of group <paramref name="group"/>'s prefix.</summary>
    public int PrefixIndex(int group, int t) => _prefixStart[group] + t;

    /// <summary>Flat index of token <paramref name="t"/> of suffix <paramref name="suffix"/> of group <paramref name="group"/>.</summary>
    public int SuffixIndex(int group, int suffix, int t)
    {
        var start = _suffixStart[group][suffix];
        if (start < 0 || t >= Groups[group].Suffixes[suffix].Length) throw new ArgumentOutOfRangeException(nameof(t));
        return start + t;
    }

    /// <summary>
    /// Flat index of the hidden state that predicts token <paramref name="t"/> of a continuation whose model input is
    /// the suffix (the continuation without its last token): the prefix's last token for t = 0, else suffix token t - 1.
    /// </summary>
    public int PredictorIndex(int group, int suffix, int t)
        => t == 0 ? PrefixIndex(group, Groups[group].Prefix.Length - 1) : SuffixIndex(group, suffix, t - 1);

    public void Dispose()
    {
        Tokens.Dispose(); Positions.Dispose(); Unpack.Dispose(); PrefixSlots.Dispose(); SuffixSlots.Dispose();
        SuffixOwner.Dispose(); PrefixMask.Dispose(); SuffixMask?.Dispose();
    }
}
