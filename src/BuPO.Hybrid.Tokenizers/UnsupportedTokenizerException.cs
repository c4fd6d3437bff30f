namespace BuPO.Hybrid.Tokenizers;

/// <summary>
/// The GGUF vocabulary uses a tokenizer model (<c>tokenizer.ggml.model</c>) or pre-tokenizer
/// (<c>tokenizer.ggml.pre</c>) the managed tokenizer does not implement; <see cref="TokenizerFactory"/> falls
/// back to llama.cpp's tokenizer on it.
/// </summary>
public sealed class UnsupportedTokenizerException(string message) : BupoException(message);
