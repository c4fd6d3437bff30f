namespace BuPO.Hybrid.Tokenizers;

/// <summary>Picks the tokenizer for a GGUF model: the managed one where it supports the vocabulary, llama.cpp's otherwise.</summary>
public static class TokenizerFactory
{
    /// <summary>
    /// The managed <see cref="GgufTokenizer"/> for <paramref name="ggufPath"/>; when its tokenizer model or
    /// pre-tokenizer is not implemented, the tokenizer <paramref name="llamaFallback"/> returns (typically the
    /// llama.cpp vocabulary of the loaded model).
    /// </summary>
    /// <exception cref="UnsupportedTokenizerException">Not supported and no fallback was given.</exception>
    /// <exception cref="BupoException">The file is missing or its vocabulary is malformed.</exception>
    public static ITextTokenizer Create(string ggufPath, Func<ITextTokenizer>? llamaFallback = null)
    {
        ArgumentNullException.ThrowIfNull(ggufPath);
        try
        {
            return GgufTokenizer.FromGguf(ggufPath);
        }
        catch (UnsupportedTokenizerException) when (llamaFallback != null)
        {
            return llamaFallback();
        }
    }
}
