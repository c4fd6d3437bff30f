using BuPO.Hybrid.Gguf;

namespace BuPO.Hybrid.Tests.Support;

/// <summary>Random-weight GGUF models with a small generated vocabulary of their own: tests that need no ../shared.</summary>
public static class OwnVocabModels
{
    /// <summary>Tokens of the generated vocabulary ("t0" .. "t96"; id 2 is the end-of-sequence token).</summary>
    public const int VocabSize = 97;

    /// <summary>Writes (once per folder) a random model of the named shape (<see cref="RandomModelSpec.NamedShapes"/>) and returns its path.</summary>
    public static string Write(string dir, string shape, ulong seed = 7)
    {
        var vocab = Path.Combine(dir, "vocab.gguf");
        if (!File.Exists(vocab))
            new GgufWriter()
                .SetString("general.architecture", "llama")
                .SetString("tokenizer.ggml.model", "gpt2")
                .Set("tokenizer.ggml.tokens", GgufValue.OfArray(Enumerable.Range(0, VocabSize).Select(i => $"t{i}").ToArray()))
                .SetUInt32("tokenizer.ggml.eos_token_id", 2)
                .WriteTo(vocab);
        var path = Path.Combine(dir, $"{shape}-{seed}.gguf");
        if (!File.Exists(path))
            using (var v = GgufFile.Open(vocab)) RandomGgufModel.Write(path, RandomModelSpec.Named(shape) with { Seed = seed }, v);
        return path;
    }
}
