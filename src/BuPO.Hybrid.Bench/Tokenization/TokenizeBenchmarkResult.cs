namespace BuPO.Hybrid.Bench.Tokenization;

/// <summary>What the managed-vs-llama.cpp tokenizer benchmark measured, and on which texts.</summary>
/// <param name="Comparison">Managed (A) vs llama.cpp (B) throughput and the texts whose ids differ.</param>
/// <param name="Texts">Texts encoded (per pass).</param>
/// <param name="Chars">Their characters.</param>
/// <param name="TextSource">Where the texts came from, in words.</param>
public sealed record TokenizeBenchmarkResult(TokenizerComparison Comparison, int Texts, long Chars, string TextSource);
