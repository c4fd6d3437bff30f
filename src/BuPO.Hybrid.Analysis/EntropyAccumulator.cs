namespace BuPO.Hybrid.Analysis;

/// <summary>
/// Accumulates per-position lens entropies, sequence by sequence, into per-block means and standard
/// deviations (token-weighted over all analyzed positions, as the paper averages).
/// </summary>
public sealed class EntropyAccumulator
{
    private readonly int _nLayer;
    private readonly Moments[,] _sites;
    private Moments _embedding, _final;
    private readonly List<float[][]>? _perToken;
    private float[][]? _currentPerToken;
    private int _currentPositions = -1;

    /// <param name="nLayer">Number of blocks.</param>
    /// <param name="keepPerToken">Keep every position's layer-policy entropies (for heatmaps and --per-token).</param>
    public EntropyAccumulator(int nLayer, bool keepPerToken = false)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(nLayer);
        _nLayer = nLayer;
        _sites = new Moments[nLayer, Enum.GetValues<LensSite>().Length];
        if (keepPerToken) _perToken = new();
    }

    /// <summary>Number of blocks.</summary>
    public int LayerCount => _nLayer;

    /// <summary>Analyzed positions so far (counted from the final policy's entries).</summary>
    public long PositionCount => _final.Count;

    /// <summary>Starts a sequence with <paramref name="positions"/> analyzed positions; every Add until the next call must have that many values.</summary>
    public void BeginSequence(int positions)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(positions);
        _currentPositions = positions;
        if (_perToken == null) return;
        _currentPerToken = new float[positions][];
        for (var p = 0; p < positions; p++) _currentPerToken[p] = new float[_nLayer];
        _perToken.Add(_currentPerToken);
    }

    /// <summary>Adds the entropies of one site of one block for the current sequence's positions.</summary>
    public void Add(LensSite site, int block, ReadOnlySpan<float> entropies)
    {
        Check(entropies);
        if ((uint)block >= (uint)_nLayer) throw new ArgumentOutOfRangeException(nameof(block));
        _sites[block, (int)site].Add(entropies);
        if (site == LensSite.Layer && _currentPerToken != null)
            for (var p = 0; p < entropies.Length; p++) _currentPerToken[p][block] = entropies[p];
    }

    /// <summary>Adds the token embedding's lens entropies (H^{-1}).</summary>
    public void AddEmbedding(ReadOnlySpan<float> entropies) { Check(entropies); _embedding.Add(entropies); }

    /// <summary>Adds the final policy's entropies.</summary>
    public void AddFinal(ReadOnlySpan<float> entropies) { Check(entropies); _final.Add(entropies); }

    /// <summary>Mean entropy of a site of a block so far.</summary>
    public double Mean(LensSite site, int block) => _sites[block, (int)site].Mean;

    /// <summary>The per-block summaries with the ΔH metrics of BUPO_SPEC.md §2.</summary>
    public IReadOnlyList<LayerEntropy> Layers()
    {
        var layers = new LayerEntropy[_nLayer];
        for (var k = 0; k < _nLayer; k++)
        {
            var h = _sites[k, (int)LensSite.Layer];
            var prev = k == 0 ? _embedding.Mean : _sites[k - 1, (int)LensSite.Layer].Mean;
            layers[k] = new LayerEntropy
            {
                Index = k,
                Entropy = h.Mean,
                EntropyStd = h.Std,
                AttentionEntropy = Mean(LensSite.Attention, k),
                FfnEntropy = Mean(LensSite.Ffn, k),
                AttentionEntropyStd = _sites[k, (int)LensSite.Attention].Std,
                FfnEntropyStd = _sites[k, (int)LensSite.Ffn].Std,
                AttentionInputEntropy = Mean(LensSite.AttentionInput, k),
                FfnInputEntropy = Mean(LensSite.FfnInput, k),
                DeltaLayer = h.Mean - prev,
                DeltaAttention = Mean(LensSite.Attention, k) - Mean(LensSite.AttentionInput, k),
                DeltaFfn = Mean(LensSite.Ffn, k) - Mean(LensSite.FfnInput, k),
            };
        }
        return layers;
    }

    /// <summary>Mean entropy of the final policy.</summary>
    public double FinalEntropy => _final.Mean;

    /// <summary>Mean entropy of the embedding lens.</summary>
    public double EmbeddingEntropy => _embedding.Mean;

    /// <summary>Per-position layer entropies [sequence][position][block], or null when not kept.</summary>
    public IReadOnlyList<float[][]>? PerToken => _perToken;

    private void Check(ReadOnlySpan<float> entropies)
    {
        if (_currentPositions < 0) throw new InvalidOperationException("call BeginSequence first");
        if (entropies.Length != _currentPositions)
            throw new ArgumentException($"expected {_currentPositions} entropies for this sequence, got {entropies.Length}");
    }

    // Sums in double: means over millions of positions must not drift.
    private struct Moments
    {
        public long Count;
        private double _sum, _sumSq;

        public void Add(ReadOnlySpan<float> values)
        {
            foreach (var v in values) { _sum += v; _sumSq += (double)v * v; }
            Count += values.Length;
        }

        public readonly double Mean => Count == 0 ? double.NaN : _sum / Count;

        public readonly double Std => Count < 2 ? 0 : Math.Sqrt(Math.Max(0, (_sumSq - _sum * _sum / Count) / (Count - 1)));
    }
}
