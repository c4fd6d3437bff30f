using BuPO.Hybrid.Gguf;

namespace BuPO.Hybrid.Demo;

/// <summary>
/// The demo model's tokenizer: a character-level SentencePiece-style vocabulary (<c>tokenizer.ggml.model = "llama"</c>)
/// that llama.cpp and the managed <c>GgufTokenizer</c> both read from the GGUF. Ids 0, 1, 2 are <c>&lt;unk&gt;</c>,
/// <c>&lt;s&gt;</c>, <c>&lt;/s&gt;</c> (token types unknown / control / control); then one normal token per character of
/// <see cref="ArithmeticTaskGenerator.Alphabet"/> in its order, the space written as SentencePiece's <c>▁</c>. Every score
/// is 0, so no two characters ever merge: text tokenizes character by character. BOS is added, EOS is not, and there
/// is no space prefix, so a prompt's ids are BOS followed by one id per character.
/// </summary>
public static class CharVocabulary
{
    public const int UnknownId = 0;
    public const int BosId = 1;
    public const int EosId = 2;
    /// <summary>Id of the first alphabet character.</summary>
    public const int FirstCharId = 3;

    private const int TypeNormal = 1, TypeUnknown = 2, TypeControl = 3;

    /// <summary>The token texts in id order.</summary>
    public static IReadOnlyList<string> Tokens { get; } =
        new[] { "<unk>", "<s>", "</s>" }.Concat(ArithmeticTaskGenerator.Alphabet.Select(c => c == ' ' ? "\u2581" : c.ToString())).ToArray();

    /// <summary>Number of tokens (3 + alphabet size).</summary>
    public static int Size => Tokens.Count;

    /// <summary>The id of an alphabet character, or <see cref="UnknownId"/>.</summary>
    public static int IdOf(char c)
    {
        var i = ArithmeticTaskGenerator.Alphabet.IndexOf(c);
        return i < 0 ? UnknownId : FirstCharId + i;
    }

    /// <summary>BOS followed by one id per character: what llama.cpp's tokenizer gives for this vocabulary.</summary>
    public static int[] Encode(string text, bool addBos = true)
    {
        var ids = new int[text.Length + (addBos ? 1 : 0)];
        var o = 0;
        if (addBos) ids[o++] = BosId;
        foreach (var c in text) ids[o++] = IdOf(c);
        return ids;
    }

    /// <summary>Sets every <c>tokenizer.*</c> key of the vocabulary on <paramref name="writer"/>.</summary>
    public static GgufWriter AddTo(GgufWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        var n = Size;
        var types = new int[n];
        for (var i = 0; i < n; i++) types[i] = i switch { UnknownId => TypeUnknown, BosId or EosId => TypeControl, _ => TypeNormal };
        return writer
            .SetString("tokenizer.ggml.model", "llama")
            .SetString("tokenizer.ggml.pre", "default")
            .Set("tokenizer.ggml.tokens", GgufValue.OfArray(Tokens.ToArray()))
            .Set("tokenizer.ggml.scores", GgufValue.OfArray(new float[n]))
            .Set("tokenizer.ggml.token_type", GgufValue.OfArray(types))
            .SetUInt32("tokenizer.ggml.unknown_token_id", UnknownId)
            .SetUInt32("tokenizer.ggml.bos_token_id", BosId)
            .SetUInt32("tokenizer.ggml.eos_token_id", EosId)
            .SetBool("tokenizer.ggml.add_bos_token", true)
            .SetBool("tokenizer.ggml.add_eos_token", false)
            .SetBool("tokenizer.ggml.add_space_prefix", false);
    }

    /// <summary>Writes a vocabulary-only GGUF (metadata, no tensors).</summary>
    public static void WriteVocabGguf(string path) => AddTo(new GgufWriter()).WriteTo(path);
}
