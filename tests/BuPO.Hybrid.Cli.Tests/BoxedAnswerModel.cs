using BuPO.Hybrid.Gguf;
using BuPO.Hybrid.Tests.Support;

namespace BuPO.Hybrid.Cli.Tests;

/// <summary>
/// A llama GGUF (the generated 512-token SentencePiece vocabulary) that writes "\boxed{4}" (9 tokens) over and over after any prompt,
/// at any temperature: every block's attention and FFN output is zero, so the last hidden state is the current token's
/// embedding; the embeddings are one-hot (after RMSNorm, 8 on one of 64 axes) and output.weight maps each axis to the
/// next character of the cycle \ → b → o → x → e → d → { → 4 → } → \ (any other token → \) with a logit margin of 80.
/// </summary>
internal static class BoxedAnswerModel
{
    public static string Write(string dir)
    {
        var path = Path.Combine(dir, "boxed-4.gguf");
        if (File.Exists(path)) return path;
        var vocab = RandomTestModels.SpmVocab(dir);
        var random = Path.Combine(dir, "boxed-4-random.gguf");
        var spec = RandomModelSpec.Named("llama-tiny");
        RandomGgufModel.Write(random, spec, vocab);
        using var src = GgufFile.Open(random);
        var tokens = (string[])((GgufArray)src.Get("tokenizer.ggml.tokens")!.Value!).Items;
        int Id(string piece) => Array.IndexOf(tokens, piece) is var i and >= 0 ? i : throw new InvalidOperationException($"no token '{piece}'");
        int[] cycle = "\\boxed{4}".Select(c => Id(c.ToString())).ToArray();   // single-character pieces
        int n = tokens.Length, embd = spec.Embedding;
        var embedding = new float[n * embd];
        for (int t = 0; t < n; t++) embedding[t * embd + (Array.IndexOf(cycle, t) + 1)] = 1f;   // axis 0 for tokens off the cycle
        var output = new float[n * embd];
        const float scale = 10f;                        // logit = 8 (RMSNorm of a one-hot in 64 dims) x 10
        for (int c = 0; c < cycle.Length; c++) output[cycle[(c + 1) % cycle.Length] * embd + c + 1] = scale;
        output[cycle[0] * embd] = scale;
        GgufWriter.Copy(src, path, w =>
        {
            w.ReplaceTensor("token_embd.weight", GgmlType.F32, GgufTensorData.FromFloats(embedding));
            w.ReplaceTensor("output.weight", GgmlType.F32, GgufTensorData.FromFloats(output));
            w.ReplaceTensor("output_norm.weight", GgmlType.F32, GgufTensorData.FromFloats(Enumerable.Repeat(1f, embd).ToArray()));
            foreach (var t in w.Tensors.Where(t => t.Name.EndsWith(".attn_output.weight", StringComparison.Ordinal) || t.Name.EndsWith(".ffn_down.weight", StringComparison.Ordinal)).ToList())
                w.ReplaceTensor(t.Name, GgmlType.F32, GgufTensorData.FromFloats(new float[t.Shape[0] * t.Shape[1]]));
        });
        return path;
    }
}
