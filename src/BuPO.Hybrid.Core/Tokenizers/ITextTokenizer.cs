namespace BuPO.Hybrid.Tokenizers;

/// <summary>
/// The one tokenizer interface used across bupo-hybrid, in Core so that neither the llama.cpp binding nor the trainer
/// depends on a tokenizer implementation. Implementations: llama.cpp's vocabulary of a loaded model (LlamaVocab), the
/// managed tokenizer built from a GGUF vocabulary (GgufTokenizer, project Tokenizers) and the demo's character vocabulary;
/// the first two must give llama.cpp's ids exactly.
/// </summary>
public interface ITextTokenizer
{
    /// <summary>Number of tokens in the vocabulary.</summary>
    int VocabSize { get; }

    /// <summary>Beginning-of-sequence token id, or -1 when the vocabulary has none.</summary>
    int BosId { get; }

    /// <summary>End-of-sequence token id, or -1 when the vocabulary has none.</summary>
    int EosId { get; }

    /// <summary>Whether the model expects BOS prepended when <c>addSpecial</c> is true (tokenizer.ggml.add_bos_token).</summary>
    bool AddsBos { get; }

    /// <summary>True for tokens that end generation (EOS, EOT and the like).</summary>
    bool IsEndOfGeneration(int id);

    /// <summary>Tokenizes <paramref name="text"/> as <c>llama_tokenize</c> does.</summary>
    /// <param name="text">The text (converted to UTF-8 as llama.cpp receives it; a lone surrogate becomes U+FFFD).</param>
    /// <param name="addSpecial">Add BOS/EOS as the model's metadata asks.</param>
    /// <param name="parseSpecial">Recognize special/control tokens written in the text (e.g. chat markers).</param>
    int[] Encode(string text, bool addSpecial = true, bool parseSpecial = false);

    /// <summary>Detokenizes as <c>llama_detokenize</c> does.</summary>
    /// <param name="ids">Token ids, each inside the vocabulary (else <see cref="ArgumentOutOfRangeException"/>).</param>
    /// <param name="removeSpecial">Drop BOS/EOS at the ends when the model adds them.</param>
    /// <param name="unparseSpecial">Render special tokens as their text.</param>
    string Decode(ReadOnlySpan<int> ids, bool removeSpecial = false, bool unparseSpecial = false);

    /// <summary>The text piece of one token (as <c>llama_token_to_piece</c> with special=true).</summary>
    string TokenToPiece(int id);
}
