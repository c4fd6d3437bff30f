using BuPO.Hybrid.Gguf;
using TorchSharp;
using static TorchSharp.torch;

namespace BuPO.Hybrid.Model;

/// <summary>
/// Writes a model's current weights as a GGUF llama.cpp loads: every metadata key of the source file (tokenizer
/// included) and its tensors under the same names, shapes and order. The type policy is llama-quantize's: tensors
/// whose name does not end in "weight", 1-D tensors and *_norm.weight stay F32; a 2-D weight whose rows do not divide
/// into the type's blocks falls back to F16 (<see cref="GgufTypePolicy"/>). Tensors that are not parameters
/// (rope_freqs.weight) are copied from the source. The write is atomic (temporary file, then rename).
/// </summary>
public static class ModelExporter
{
    /// <summary>Types encoded here (GgmlQuantizer); the K-quants and other llama-quantize types are made from an export of
    /// one of these by llama.cpp (BuPO.Hybrid.RL's WeightSync: this project does not reference llama.cpp).</summary>
    public static IReadOnlyList<GgmlType> DirectTypes => GgufTypePolicy.DirectTypes;

    /// <summary>Exports as F32, F16, BF16 or Q8_0.</summary>
    /// <exception cref="BupoException">The source does not match the model, or the type is not a direct type.</exception>
    public static void Export(TransformerModel model, string sourceGguf, string outPath, GgmlType type)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (!DirectTypes.Contains(type))
            throw new BupoException($"export type {type} is not written directly (use {string.Join(", ", DirectTypes)}, or a llama-quantize type name)");
        var full = Path.GetFullPath(outPath);
        var dir = Path.GetDirectoryName(full)!;
        if (!Directory.Exists(dir)) throw new BupoException($"{dir}: output folder does not exist");
        using var source = GgufFile.Open(sourceGguf);
        if (string.Equals(source.Path, full, StringComparison.Ordinal)) throw new BupoException($"{full}: the export must not overwrite its source");
        Validate(model, source);

        var writer = GgufWriter.FromFile(source);
        var byName = model.GgufParameters.ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
        foreach (var info in source.Tensors)
        {
            if (!byName.TryGetValue(info.Name, out var param)) continue; // not trained: copied as it is
            var t = GgufTypePolicy.TensorType(info.Name, info.Shape, type);
            var p = param;
            writer.ReplaceTensor(info.Name, t, GgufTensorData.FromFloats(() => ToFloats(p)));
        }
        GgufTypePolicy.SetFileKeys(writer, type);
        try { writer.WriteTo(full); }
        catch (IOException e) { throw new BupoException($"{full}: cannot write: {e.Message}"); }
        catch (UnauthorizedAccessException e) { throw new BupoException($"{full}: cannot write: {e.Message}"); }
    }

    private static void Validate(TransformerModel model, GgufFile source)
    {
        var config = TransformerConfig.FromGguf(source);
        if (config.Architecture != model.Config.Architecture || config.LayerCount != model.Config.LayerCount || config.EmbeddingLength != model.Config.EmbeddingLength
            || config.VocabSize != model.Config.VocabSize)
            throw new BupoException($"{source.Path}: does not match the model being exported ({config} vs {model.Config})");
        foreach (var (name, p) in model.GgufParameters)
        {
            var info = source.FindTensor(name) ?? throw new BupoException($"{source.Path}: has no tensor '{name}', which the model has");
            if (!info.Shape.Reverse().SequenceEqual(p.shape))
                throw new BupoException($"{source.Path}: tensor '{name}' has shape [{string.Join(", ", info.Shape)}], the model's is [{string.Join(", ", p.shape.Reverse())}]");
        }
    }

    private static ReadOnlyMemory<float> ToFloats(Tensor p)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var cpu = p.detach().to(ScalarType.Float32, CPU).contiguous();
        return cpu.data<float>().ToArray();
    }
}
