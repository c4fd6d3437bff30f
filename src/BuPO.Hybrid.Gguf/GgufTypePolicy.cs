namespace BuPO.Hybrid.Gguf;

/// <summary>
/// llama-quantize's type policy for the types bupo-hybrid encodes itself (F32, F16, BF16, Q8_0; <see cref="GgmlQuantizer"/>):
/// which type each tensor is written as, and the file-level keys that go with it. Shared by the weight sync
/// (ModelExporter) and file-to-file conversion (LlamaQuantizer), so both write what llama_model_quantize would, except
/// that a 2-D weight whose rows do not divide into the type's blocks (stories260K's 172-wide ffn_down for Q8_0) falls back
/// to F16, as older llama.cpp did, where llama.cpp 815a2a59 refuses the whole file.
/// </summary>
public static class GgufTypePolicy
{
    /// <summary>The types written here; other llama-quantize types (K-quants, ...) go through llama_model_quantize.</summary>
    public static IReadOnlyList<GgmlType> DirectTypes { get; } = [GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0];

    /// <summary>The direct type named <paramref name="name"/> (case-insensitive, as llama-quantize spells it), if it is one.</summary>
    public static bool TryDirectType(string? name, out GgmlType type)
    {
        foreach (var t in DirectTypes)
            if (string.Equals(t.ToString(), name?.Trim(), StringComparison.OrdinalIgnoreCase)) { type = t; return true; }
        type = default;
        return false;
    }

    /// <summary>
    /// The type a tensor is written as for a requested <paramref name="target"/>: tensors whose name does not end in
    /// "weight", 1-D tensors and *_norm.weight stay F32; a 2-D weight whose rows do not divide into the target's blocks
    /// is F16; everything else is <paramref name="target"/>.
    /// </summary>
    public static GgmlType TensorType(string name, long[] shape, GgmlType target)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(shape);
        if (target == GgmlType.F32) return GgmlType.F32;
        var nDims = 1; // ggml_n_dims: trailing dimensions of size 1 do not count
        for (var i = 0; i < shape.Length; i++) if (shape[i] > 1) nDims = i + 1;
        if (nDims < 2 || !name.EndsWith("weight", StringComparison.Ordinal) || name.Contains("_norm.weight", StringComparison.Ordinal))
            return GgmlType.F32;
        if (shape[0] % GgmlTypeInfo.BlockSize(target) != 0) return GgmlType.F16;
        return target;
    }

    /// <summary>llama_ftype (<c>general.file_type</c>) of a file whose 2-D weights are <paramref name="type"/>.</summary>
    public static uint FileType(GgmlType type) => type switch
    {
        GgmlType.F32 => 0,  // LLAMA_FTYPE_ALL_F32
        GgmlType.F16 => 1,  // LLAMA_FTYPE_MOSTLY_F16
        GgmlType.Q8_0 => 7, // LLAMA_FTYPE_MOSTLY_Q8_0
        GgmlType.BF16 => 32, // LLAMA_FTYPE_MOSTLY_BF16
        _ => throw new ArgumentOutOfRangeException(nameof(type), $"{type} has no file type here"),
    };

    /// <summary>Sets <c>general.file_type</c> and <c>general.quantization_version</c> (2 for Q8_0, absent otherwise).</summary>
    public static void SetFileKeys(GgufWriter writer, GgmlType type)
    {
        ArgumentNullException.ThrowIfNull(writer);
        writer.SetUInt32("general.file_type", FileType(type));
        if (type == GgmlType.Q8_0) writer.SetUInt32("general.quantization_version", 2);
        else writer.Remove("general.quantization_version");
    }
}
