using System.Diagnostics;

namespace BuPO.Hybrid.Tokenizers;

/// <summary>Throughput of one tokenizer on a set of lines.</summary>
/// <param name="Name">The tokenizer (its type name unless given).</param>
/// <param name="Tokens">Tokens produced over all passes.</param>
/// <param name="Seconds">Time spent encoding, after a warm-up pass.</param>
public sealed record TokenizerThroughput(string Name, long Tokens, double Seconds)
{
    /// <summary>Tokens per second.</summary>
    public double TokensPerSecond => Seconds > 0 ? Tokens / Seconds : double.PositiveInfinity;

    public override string ToString() => $"{Name}: {TokensPerSecond:N0} tokens/s ({Tokens:N0} tokens in {Seconds:F3} s)";
}

/// <summary>Both tokenizers' throughput on the same text, and whether they agreed on every line.</summary>
public sealed record TokenizerComparison(TokenizerThroughput A, TokenizerThroughput B, int Lines, int MismatchedLines)
{
    /// <summary>How many times faster A is than B.</summary>
    public double Speedup => A.TokensPerSecond / B.TokensPerSecond;

    public override string ToString() =>
        $"{Lines} lines: {A}; {B}; A/B = {Speedup:F2}x; {(MismatchedLines == 0 ? "identical ids" : $"{MismatchedLines} lines differ")}";
}

/// <summary>Measures tokenizers' encode throughput (for <c>bench tokenize</c>; not a test).</summary>
public static class TokenizerBenchmark
{
    /// <summary>
    /// Encodes <paramref name="lines"/> with each tokenizer (one warm-up pass, then passes until
    /// <paramref name="minSeconds"/> have elapsed, at least one) and reports tokens/s of each, plus the
    /// number of lines on which their ids differ.
    /// </summary>
    public static TokenizerComparison Run(ITextTokenizer tokenizerA, ITextTokenizer tokenizerB, IReadOnlyList<string> lines,
        bool addSpecial = false, bool parseSpecial = false, double minSeconds = 0.5, string? nameA = null, string? nameB = null)
    {
        ArgumentNullException.ThrowIfNull(tokenizerA);
        ArgumentNullException.ThrowIfNull(tokenizerB);
        ArgumentNullException.ThrowIfNull(lines);
        var mismatched = 0;
        foreach (var line in lines)
        {
            if (!tokenizerA.Encode(line, addSpecial, parseSpecial).AsSpan().SequenceEqual(tokenizerB.Encode(line, addSpecial, parseSpecial)))
                mismatched++;
        }
        var a = Measure(tokenizerA, lines, addSpecial, parseSpecial, minSeconds, nameA);
        var b = Measure(tokenizerB, lines, addSpecial, parseSpecial, minSeconds, nameB);
        return new TokenizerComparison(a, b, lines.Count, mismatched);
    }

    /// <summary>One tokenizer's throughput on <paramref name="lines"/>.</summary>
    public static TokenizerThroughput Measure(ITextTokenizer tokenizer, IReadOnlyList<string> lines, bool addSpecial = false,
        bool parseSpecial = false, double minSeconds = 0.5, string? name = null)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(lines);
        foreach (var line in lines) tokenizer.Encode(line, addSpecial, parseSpecial); // warm-up (JIT, caches)
        long tokens = 0;
        var sw = Stopwatch.StartNew();
        do
        {
            foreach (var line in lines) tokens += tokenizer.Encode(line, addSpecial, parseSpecial).Length;
        } while (sw.Elapsed.TotalSeconds < minSeconds);
        sw.Stop();
        return new TokenizerThroughput(name ?? tokenizer.GetType().Name, tokens, sw.Elapsed.TotalSeconds);
    }
}
