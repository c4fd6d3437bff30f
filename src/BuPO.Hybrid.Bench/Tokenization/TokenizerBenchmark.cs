using System.Diagnostics;
using BuPO.Hybrid.Bench.Models;
using BuPO.Hybrid.Bench.Text;
using BuPO.Hybrid.Llama;
using BuPO.Hybrid.Tokenizers;

namespace BuPO.Hybrid.Bench.Tokenization;

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

/// <summary>
/// Measures tokenizers' encode throughput: the managed tokenizer (<see cref="GgufTokenizer"/>) against llama.cpp's
/// (<see cref="LlamaVocab"/>, a vocab-only load) on the same texts, and the number of texts whose ids differ (must be 0).
/// </summary>
public static class TokenizerBenchmark
{
    /// <summary>
    /// Picks the texts (the shared GSM8K/MATH500 test texts, else generated word problems), loads both tokenizers of
    /// <paramref name="model"/> and compares them. Needs an initialized <see cref="LlamaBackend"/>.
    /// </summary>
    public static TokenizeBenchmarkResult Run(BenchModel model, TokenizeBenchmarkSettings settings, Action<string>? log = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(settings);
        log ??= _ => { };
        IReadOnlyList<string> texts;
        string textSource;
        var shared = settings.GeneratedText ? null : BenchText.SharedLines(settings.DataDir);
        if (shared is { } s) (texts, textSource) = s;
        else
        {
            texts = BenchText.Generated(settings.Lines ?? 2000);
            textSource = "generated word problems" + (settings.GeneratedText ? "" : " (no GSM8K/MATH500 test files found)");
        }
        if (settings.Lines is { } n && texts.Count > n)
        {
            textSource = $"the first {n} of {texts.Count} texts: {textSource}";
            texts = texts.Take(n).ToArray();
        }

        GgufTokenizer managed;
        try { managed = GgufTokenizer.FromGguf(model.Path); }
        catch (UnsupportedTokenizerException e) { throw new BupoException($"the managed tokenizer does not support this vocabulary: {e.Message}"); }
        using var llm = LlamaModel.Load(model.Path, new LlamaModelOptions { VocabOnly = true });
        log($"tokenizing {texts.Count} texts, at least {settings.MinSeconds:0.##} s per tokenizer");
        var comparison = Run(managed, llm.Vocab, texts, settings.AddSpecial, settings.ParseSpecial, settings.MinSeconds, "managed (GgufTokenizer)", "llama.cpp (llama_tokenize)");
        return new TokenizeBenchmarkResult(comparison, texts.Count, texts.Sum(t => (long)t.Length), textSource);
    }

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
