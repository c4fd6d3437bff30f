namespace BuPO.Hybrid.Tokenizers;

/// <summary>How the texts of a vocabulary's normal tokens spell their bytes.</summary>
internal enum TokenTextForm
{
    /// <summary>SentencePiece: UTF-8 text with spaces written as ▁ (U+2581).</summary>
    SentencePiece,

    /// <summary>Byte-level BPE: one printable character per byte (GPT-2's byte-to-unicode table).</summary>
    ByteLevel,
}

/// <summary>
/// The values llama.cpp assumes for a tokenizer model before it reads the metadata (<c>llama_vocab::impl::load</c>);
/// an id of -1 means none.
/// </summary>
internal sealed record GgufVocabularyDefaults(
    TokenTextForm TextForm, int Bos, int Eos, int Unknown, bool AddSpacePrefix, bool CleanSpaces, bool AddBos, bool AddEos = false);
