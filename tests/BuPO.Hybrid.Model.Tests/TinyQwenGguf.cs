using BuPO.Hybrid.Gguf;
using BuPO.Hybrid.Tests.Support;

namespace BuPO.Hybrid.Model.Tests;

/// <summary>
/// Writes tiny random-weight qwen2 / qwen3 GGUFs with the real Qwen2 tokenizer (copied from ggml-vocab-qwen2.gguf), so
/// llama.cpp loads them. A test-local stand-in until the gguf branch's RandomGgufModel is merged here.
/// </summary>
internal static class TinyQwenGguf
{
    public sealed record Shape(int Layers = 3, int Embd = 64, int Heads = 4, int HeadsKv = 2, int? HeadDim = null, int Ff = 96, bool Tied = false);

    public static string Write(string dir, string arch, Shape shape, int seed)
    {
        var vocabPath = SharedAssets.RequireFile(SharedAssets.Qwen2Vocab);
        var path = Path.Combine(dir, $"tiny-{arch}-{seed}.gguf");
        using var vocab = GgufFile.Open(vocabPath);
        var w = GgufWriter.FromFile(vocab);
        w.RemoveWhere(k => k.StartsWith("qwen2.", StringComparison.Ordinal) || k == "general.file_type");
        var nVocab = vocab.GetArray("tokenizer.ggml.tokens")!.Count;
        var hd = shape.HeadDim ?? shape.Embd / shape.Heads;
        w.SetString("general.architecture", arch).SetString("general.name", $"tiny-random-{arch}");
        w.SetUInt32($"{arch}.block_count", (uint)shape.Layers);
        w.SetUInt32($"{arch}.context_length", 4096);
        w.SetUInt32($"{arch}.embedding_length", (uint)shape.Embd);
        w.SetUInt32($"{arch}.feed_forward_length", (uint)shape.Ff);
        w.SetUInt32($"{arch}.attention.head_count", (uint)shape.Heads);
        w.SetUInt32($"{arch}.attention.head_count_kv", (uint)shape.HeadsKv);
        if (shape.HeadDim is not null)
        {
            w.SetUInt32($"{arch}.attention.key_length", (uint)hd);
            w.SetUInt32($"{arch}.attention.value_length", (uint)hd);
        }
        w.SetFloat32($"{arch}.rope.freq_base", 1000000f);
        w.SetFloat32($"{arch}.attention.layer_norm_rms_epsilon", 1e-6f);
        w.SetUInt32("general.file_type", 0);

        var rng = new Random(seed);
        float Gauss() => (float)(Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble()));
        void Add(string name, long[] ggmlShape, Func<float> gen)
        {
            var n = ggmlShape.Aggregate(1L, (a, b) => a * b);
            var data = new float[n];
            for (var i = 0; i < n; i++) data[i] = gen();
            w.AddTensor(name, ggmlShape, GgmlType.F32, GgufTensorData.FromFloats(data));
        }
        Func<float> Linear(int fanIn) { var s = (float)(1 / Math.Sqrt(fanIn)); return () => Gauss() * s; }
        Func<float> Norm() => () => 1 + 0.2f * Gauss();
        Func<float> Bias() => () => 0.2f * Gauss();
        int d = shape.Embd, nq = shape.Heads * hd, nkv = shape.HeadsKv * hd;

        Add("token_embd.weight", [d, nVocab], () => Gauss() * 0.5f);
        Add("output_norm.weight", [d], Norm());
        if (!shape.Tied) Add("output.weight", [d, nVocab], Linear(d));
        for (var k = 0; k < shape.Layers; k++)
        {
            var b = $"blk.{k}.";
            Add(b + "attn_norm.weight", [d], Norm());
            Add(b + "attn_q.weight", [d, nq], Linear(d));
            Add(b + "attn_k.weight", [d, nkv], Linear(d));
            Add(b + "attn_v.weight", [d, nkv], Linear(d));
            if (arch == "qwen2")
            {
                Add(b + "attn_q.bias", [nq], Bias());
                Add(b + "attn_k.bias", [nkv], Bias());
                Add(b + "attn_v.bias", [nkv], Bias());
            }
            if (arch == "qwen3")
            {
                Add(b + "attn_q_norm.weight", [hd], Norm());
                Add(b + "attn_k_norm.weight", [hd], Norm());
            }
            Add(b + "attn_output.weight", [nq, d], Linear(nq));
            Add(b + "ffn_norm.weight", [d], Norm());
            Add(b + "ffn_gate.weight", [d, shape.Ff], Linear(d));
            Add(b + "ffn_up.weight", [d, shape.Ff], Linear(d));
            Add(b + "ffn_down.weight", [shape.Ff, d], Linear(shape.Ff));
        }
        w.WriteTo(path);
        return path;
    }
}
