namespace BuPO.Hybrid.Tokenizers;

/// <summary>
/// The values llama.cpp assumes for a tokenizer model before it reads the metadata (<c>llama_vocab::impl::load</c>);
/// an id of -1 means none.
/// </summary>
internal sealed record GgufVocabularyDefaults(
    TokenTextForm TextForm, int Bos, int Eos, int Unknown, bool AddSpacePrefix, bool CleanSpaces, bool AddBos, bool AddEos = false);
