namespace BuPO.Hybrid.Bench.Tokenization;

/// <summary>Settings of the managed-vs-llama.cpp run of <see cref="TokenizerBenchmark"/>.</summary>
public sealed record TokenizeBenchmarkSettings
{
    /// <summary>Use only the first N texts; null = all GSM8K + MATH500 test texts, or 2,000 generated.</summary>
    public int? Lines { get; init; }
    /// <summary>Encode the texts repeatedly for at least this long per tokenizer (after a warm-up pass).</summary>
    public double MinSeconds { get; init; } = 2.0;
    /// <summary>Add BOS/EOS as the model does.</summary>
    public bool AddSpecial { get; init; }
    /// <summary>Parse special-token text into special tokens.</summary>
    public bool ParseSpecial { get; init; }
    /// <summary>Use generated word problems even when the shared GSM8K/MATH500 data exist.</summary>
    public bool GeneratedText { get; init; }
    /// <summary>The data folder holding gsm8k/ and math500/; null = none (generated text).</summary>
    public string? DataDir { get; init; }
}
