using BuPO.Hybrid.Gguf;

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
            return FromGguf(ggufPath);
        }
        catch (UnsupportedTokenizerException) when (llamaFallback != null)
        {
            return llamaFallback();
        }
    }

    /// <summary>The managed tokenizer of a GGUF file (a vocab-only file or a full model).</summary>
    /// <exception cref="UnsupportedTokenizerException">The tokenizer model or pre-tokenizer is not implemented here.</exception>
    /// <exception cref="BupoException">The file is missing or its vocabulary is malformed.</exception>
    public static GgufTokenizer FromGguf(string ggufPath)
    {
        using var file = GgufFile.Open(ggufPath);
        return FromGguf(file);
    }

    /// <summary>
    /// The managed tokenizer of an open GGUF file, by <c>tokenizer.ggml.model</c>: <see cref="GgufSpmTokenizer"/> for
    /// <c>llama</c>, <see cref="GgufBpeTokenizer"/> for <c>gpt2</c>.
    /// </summary>
    /// <inheritdoc cref="FromGguf(string)"/>
    public static GgufTokenizer FromGguf(GgufFile file)
    {
        ArgumentNullException.ThrowIfNull(file);
        var model = GgufVocabulary.Read(file, "tokenizer.ggml.model", () => file.GetString("tokenizer.ggml.model"))
            ?? throw new UnsupportedTokenizerException($"{file.Path}: no tokenizer.ggml.model: the file has no vocabulary");
        return model switch
        {
            "llama" => GgufSpmTokenizer.Read(file),
            "gpt2" => GgufBpeTokenizer.Read(file),
            _ => throw new UnsupportedTokenizerException(
                $"{file.Path}: unsupported tokenizer model '{model}' (tokenizer.ggml.model); the managed tokenizer implements 'gpt2' (byte-level BPE) and 'llama' (SentencePiece)"),
        };
    }
}
