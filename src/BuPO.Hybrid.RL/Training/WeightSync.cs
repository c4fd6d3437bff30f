using System.Diagnostics;
using BuPO.Hybrid.Gguf;
using BuPO.Hybrid.Llama;
using BuPO.Hybrid.Model;

namespace BuPO.Hybrid.RL.Training;

/// <summary>What one weight sync wrote and how long each of its stages took.</summary>
/// <param name="File">The GGUF file the sampler now runs.</param>
/// <param name="Bytes">Its size.</param>
/// <param name="ExportSeconds">The trainer's weights encoded to GGUF (for a llama-quantize type: the F16/F32 export).</param>
/// <param name="QuantizeSeconds">llama.cpp's quantization of that export, or null for a type encoded directly.</param>
/// <param name="ReloadSeconds">The sampler's reload of the file.</param>
public sealed record WeightSyncTimes(string File, long Bytes, double ExportSeconds, double? QuantizeSeconds, double ReloadSeconds)
{
    /// <summary>Export + quantize + reload.</summary>
    public double TotalSeconds => ExportSeconds + (QuantizeSeconds ?? 0) + ReloadSeconds;
}

/// <summary>
/// The weight sync from the trainer to the llama.cpp sampler: export of the trainer's weights by type name
/// (F32/F16/BF16/Q8_0 with our own encoder, <see cref="ModelExporter"/>; the K-quants and the other llama-quantize types by
/// writing an F16 or F32 export beside the output and quantizing it with llama.cpp, <see cref="LlamaQuantizer"/>), then the
/// sampler's reload. Training and <c>bench sync</c> both run <see cref="Run"/>.
/// </summary>
public static class WeightSync
{
    /// <summary>Every accepted type name: F32, F16, BF16, Q8_0 and llama-quantize's (Q4_K_M, Q6_K, ...).</summary>
    public static IReadOnlyList<string> TypeNames =>
        ModelExporter.DirectTypes.Select(t => t.ToString()).Concat(LlamaQuantizer.TypeNames).Distinct(StringComparer.OrdinalIgnoreCase).ToArray();

    /// <summary>
    /// Exports <paramref name="model"/> as <paramref name="typeName"/> to <paramref name="outPath"/>, then calls
    /// <paramref name="reload"/> with that path (the sampler loads it), timing each stage.
    /// </summary>
    /// <exception cref="BupoException">Unknown type, the source does not match the model, or llama.cpp failed.</exception>
    public static WeightSyncTimes Run(TransformerModel model, string sourceGguf, string outPath, string typeName, Action<string> reload,
        GgmlType intermediate = GgmlType.F16, int threads = 0)
    {
        ArgumentNullException.ThrowIfNull(reload);
        var (export, quantize) = ExportTimed(model, sourceGguf, outPath, typeName, intermediate, threads);
        var bytes = new FileInfo(outPath).Length;
        var sw = Stopwatch.StartNew();
        reload(outPath);
        return new WeightSyncTimes(outPath, bytes, export, quantize, sw.Elapsed.TotalSeconds);
    }

    /// <summary>
    /// Exports as <paramref name="typeName"/>; for a type not encoded directly the <paramref name="intermediate"/>
    /// (F16 by default, or F32) file is always removed.
    /// </summary>
    /// <exception cref="BupoException">Unknown type, the source does not match the model, or llama.cpp failed.</exception>
    public static void Export(TransformerModel model, string sourceGguf, string outPath, string typeName, GgmlType intermediate = GgmlType.F16, int threads = 0) =>
        ExportTimed(model, sourceGguf, outPath, typeName, intermediate, threads);

    private static (double Export, double? Quantize) ExportTimed(TransformerModel model, string sourceGguf, string outPath, string typeName, GgmlType intermediate, int threads)
    {
        var name = (typeName ?? "").Trim();
        var sw = Stopwatch.StartNew();
        if (GgufTypePolicy.TryDirectType(name, out var direct))
        {
            ModelExporter.Export(model, sourceGguf, outPath, direct);
            return (sw.Elapsed.TotalSeconds, null);
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
            var export = sw.Elapsed.TotalSeconds;
            sw.Restart();
            LlamaQuantizer.Quantize(tmp, full, name, threads);
            return (export, sw.Elapsed.TotalSeconds);
        }
        finally
        {
            try { if (File.Exists(tmp)) File.Delete(tmp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }
}
