using BuPO.Hybrid.Llama.Native;

namespace BuPO.Hybrid.Llama;

/// <summary>Converts a GGUF model to another weight type with <c>llama_model_quantize</c> (what llama-quantize does).</summary>
public static unsafe class LlamaQuantizer
{
    private static readonly (string Name, LlamaFType FType)[] Types =
    [
        ("F32", LlamaFType.AllF32), ("F16", LlamaFType.MostlyF16), ("BF16", LlamaFType.BF16),
        ("Q8_0", LlamaFType.Q8_0), ("Q4_0", LlamaFType.Q4_0), ("Q4_1", LlamaFType.Q4_1), ("Q5_0", LlamaFType.Q5_0), ("Q5_1", LlamaFType.Q5_1),
        ("Q2_K", LlamaFType.Q2_K), ("Q2_K_S", LlamaFType.Q2_K_S), ("Q3_K", LlamaFType.Q3_K_M), ("Q3_K_S", LlamaFType.Q3_K_S),
        ("Q3_K_M", LlamaFType.Q3_K_M), ("Q3_K_L", LlamaFType.Q3_K_L), ("Q4_K", LlamaFType.Q4_K_M), ("Q4_K_S", LlamaFType.Q4_K_S),
        ("Q4_K_M", LlamaFType.Q4_K_M), ("Q5_K", LlamaFType.Q5_K_M), ("Q5_K_S", LlamaFType.Q5_K_S), ("Q5_K_M", LlamaFType.Q5_K_M),
        ("Q6_K", LlamaFType.Q6_K), ("IQ4_NL", LlamaFType.IQ4_NL), ("IQ4_XS", LlamaFType.IQ4_XS), ("TQ1_0", LlamaFType.TQ1_0),
        ("TQ2_0", LlamaFType.TQ2_0), ("MXFP4_MOE", LlamaFType.MXFP4_MOE),
    ];

    /// <summary>Names accepted by <see cref="Quantize"/> (case-insensitive), as llama-quantize spells them. The
    /// importance-matrix types (IQ1/IQ2/IQ3) are left out: they need an imatrix this API does not take.</summary>
    public static IReadOnlyList<string> TypeNames { get; } = Types.Select(t => t.Name).ToArray();

    /// <summary>
    /// Writes <paramref name="outputPath"/> as <paramref name="typeName"/> (e.g. "Q8_0", "Q4_K_M", "F16"). The file is
    /// written under a temporary name in the same folder and renamed when complete, so a failed run leaves no partial file.
    /// </summary>
    /// <param name="inputPath">The GGUF to convert.</param>
    /// <param name="outputPath">Where to write the result (replaced if it exists).</param>
    /// <param name="typeName">One of <see cref="TypeNames"/>.</param>
    /// <param name="threads">0 = all processors.</param>
    /// <exception cref="BupoException">Unknown type, missing/non-GGUF input, or llama.cpp failed (its error is quoted).</exception>
    public static void Quantize(string inputPath, string outputPath, string typeName, int threads = 0)
    {
        var match = Types.FirstOrDefault(t => string.Equals(t.Name, typeName?.Trim(), StringComparison.OrdinalIgnoreCase));
        if (match.Name == null)
            throw new BupoException($"unknown quantization type '{typeName}'; one of: {string.Join(", ", TypeNames)}");
        LlamaModel.ValidateGgufFile(inputPath);
        var input = Path.GetFullPath(inputPath);
        var output = Path.GetFullPath(outputPath);
        if (string.Equals(input, output, StringComparison.Ordinal)) throw new BupoException($"{output}: the output must differ from the input");
        var dir = Path.GetDirectoryName(output)!;
        if (!Directory.Exists(dir)) throw new BupoException($"{dir}: output folder does not exist");
        LlamaBackend.EnsureInitialized();

        var tmp = Path.Combine(dir, $".{Path.GetFileName(output)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        var p = LlamaNative.llama_model_quantize_default_params();
        p.nthread = threads > 0 ? threads : Environment.ProcessorCount;
        p.ftype = (int)match.FType;
        var mark = LlamaBackend.ErrorMark;
        try
        {
            uint rc = LlamaNative.llama_model_quantize(input, tmp, &p);
            if (rc != 0 || !File.Exists(tmp))
                throw new BupoException($"{input}: quantizing to {match.Name} failed (llama_model_quantize returned {rc}){LlamaBackend.ErrorsSince(mark)}");
            File.Move(tmp, output, overwrite: true);
        }
        finally
        {
            try { if (File.Exists(tmp)) File.Delete(tmp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }
}
