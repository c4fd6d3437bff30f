using BuPO.Hybrid.Gguf;
using BuPO.Hybrid.Llama;
using BuPO.Hybrid.Model;

namespace BuPO.Hybrid.RL.Training;

/// <summary>
/// The weight sync's export of the trainer's weights for the sampler, by type name: F32/F16/BF16/Q8_0 with our own
/// encoder (<see cref="ModelExporter"/>), the K-quants and the other llama-quantize types by writing an F16 (or F32)
/// export beside the output and quantizing it with llama.cpp (<see cref="LlamaQuantizer"/>).
/// </summary>
public static class SamplerExport
{
    /// <summary>Every accepted type name: F32, F16, BF16, Q8_0 and llama-quantize's (Q4_K_M, Q6_K, ...).</summary>
    public static IReadOnlyList<string> TypeNames =>
        ModelExporter.DirectTypes.Select(t => t.ToString()).Concat(LlamaQuantizer.TypeNames).Distinct(StringComparer.OrdinalIgnoreCase).ToArray();

    /// <summary>
    /// Exports as <paramref name="typeName"/>; for a type not encoded directly the <paramref name="intermediate"/>
    /// (F16 by default, or F32) file is always removed.
    /// </summary>
    /// <exception cref="BupoException">Unknown type, the source does not match the model, or llama.cpp failed.</exception>
    public static void Export(TransformerModel model, string sourceGguf, string outPath, string typeName, GgmlType intermediate = GgmlType.F16, int threads = 0)
    {
        var name = (typeName ?? "").Trim();
        var direct = ModelExporter.DirectTypes.FirstOrDefault(t => string.Equals(t.ToString(), name, StringComparison.OrdinalIgnoreCase), (GgmlType)uint.MaxValue);
        if (direct != (GgmlType)uint.MaxValue)
        {
            ModelExporter.Export(model, sourceGguf, outPath, direct);
            return;
        }
        if (!LlamaQuantizer.TypeNames.Contains(name, StringComparer.OrdinalIgnoreCase))
            throw new BupoException($"unknown export type '{typeName}'; one of: {string.Join(", ", TypeNames)}");
        if (intermediate is not (GgmlType.F16 or GgmlType.F32))
            throw new BupoException($"the intermediate export for {name} must be F16 or F32, not {intermediate}");
        var full = Path.GetFullPath(outPath);
        var tmp = Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.{intermediate}.gguf");
        try
        {
            ModelExporter.Export(model, sourceGguf, tmp, intermediate);
            LlamaQuantizer.Quantize(tmp, full, name, threads);
        }
        finally
        {
            try { if (File.Exists(tmp)) File.Delete(tmp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }
}
