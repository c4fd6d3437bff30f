namespace BuPO.Hybrid.Tokenizers;

/// <summary>How the texts of a vocabulary's normal tokens spell their bytes.</summary>
internal enum TokenTextForm
{
    /// <summary>SentencePiece: UTF-8 text with spaces written as ▁ (U+2581).</summary>
    SentencePiece,

    /// <summary>Byte-level BPE: one printable character per byte (GPT-2's byte-to-unicode table).</summary>
    ByteLevel,
}
