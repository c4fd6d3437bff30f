using BuPO.Hybrid.Gguf;
using LLama.Native;

namespace BuPO.Hybrid.Llama;

/// <summary>
/// Converts a GGUF model to another weight type, as llama-quantize does: F32, F16, BF16 and Q8_0 with our bit-exact
/// managed encoder (<see cref="GgmlQuantizer"/>, type policy <see cref="GgufTypePolicy"/>: F16 for rows that do not divide
/// into Q8_0's 32-element blocks, which llama.cpp 815a2a59 refuses), the K-quants and other types with
/// <c>llama_model_quantize</c> through LLamaSharp's NativeApi.
/// </summary>
public static unsafe class LlamaQuantizer
{
    private static readonly (string Name, LLamaFtype FType)[] Types =
    [
        ("F32", LLamaFtype.ALL_F32), ("F16", LLamaFtype.MOSTLY_F16), ("BF16", LLamaFtype.MOSTLY_BF16),
        ("Q8_0", LLamaFtype.MOSTLY_Q8_0), ("Q4_0", LLamaFtype.MOSTLY_Q4_0), ("Q4_1", LLamaFtype.MOSTLY_Q4_1), ("Q5_0", LLamaFtype.MOSTLY_Q5_0),
        ("Q5_1", LLamaFtype.MOSTLY_Q5_1), ("Q2_K", LLamaFtype.MOSTLY_Q2_K), ("Q2_K_S", LLamaFtype.MOSTLY_Q2_K_S), ("Q3_K", LLamaFtype.MOSTLY_Q3_K_M),
        ("Q3_K_S", LLamaFtype.MOSTLY_Q3_K_S), ("Q3_K_M", LLamaFtype.MOSTLY_Q3_K_M), ("Q3_K_L", LLamaFtype.MOSTLY_Q3_K_L), ("Q4_K", LLamaFtype.MOSTLY_Q4_K_M),
        ("Q4_K_S", LLamaFtype.MOSTLY_Q4_K_S), ("Q4_K_M", LLamaFtype.MOSTLY_Q4_K_M), ("Q5_K", LLamaFtype.MOSTLY_Q5_K_M), ("Q5_K_S", LLamaFtype.MOSTLY_Q5_K_S),
        ("Q5_K_M", LLamaFtype.MOSTLY_Q5_K_M), ("Q6_K", LLamaFtype.MOSTLY_Q6_K), ("IQ4_NL", LLamaFtype.MOSTLY_IQ4_NL), ("IQ4_XS", LLamaFtype.MOSTLY_IQ4_XS),
        ("TQ1_0", LLamaFtype.LLAMA_FTYPE_MOSTLY_TQ1_0), ("TQ2_0", LLamaFtype.LLAMA_FTYPE_MOSTLY_TQ2_0), ("MXFP4_MOE", LLamaFtype.LLAMA_FTYPE_MOSTLY_MXFP4_MOE),
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
        if (GgufTypePolicy.TryDirectType(match.Name, out var direct))
            Convert(input, output, direct);
        else
            QuantizeWithLlamaCpp(input, output, match.Name, threads);
    }

    /// <summary>Re-encodes every tensor of <paramref name="input"/> as the policy gives for <paramref name="target"/> (atomic write).</summary>
    private static void Convert(string input, string output, GgmlType target)
    {
        try
        {
            using var source = GgufFile.Open(input);
            GgufWriter.Copy(source, output, w =>
            {
                foreach (var t in source.Tensors) w.ConvertTensor(t.Name, GgufTypePolicy.TensorType(t.Name, t.Shape, target));
                GgufTypePolicy.SetFileKeys(w, target);
            });
        }
        catch (Exception e) when (e is GgufFormatException or ArgumentException or NotSupportedException)
        {
            throw new BupoException($"{input}: converting to {target} failed: {e.Message}", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new BupoException($"{output}: cannot write: {e.Message}", e);
        }
    }

    /// <summary>
    /// llama.cpp's own <c>llama_model_quantize</c> for any of <see cref="TypeNames"/> (Q8_0 included: the tests compare our
    /// encoder with it). Written under a temporary name and renamed when complete.
    /// </summary>
    internal static void QuantizeWithLlamaCpp(string input, string output, string typeName, int threads)
    {
        var match = Types.First(t => string.Equals(t.Name, typeName, StringComparison.OrdinalIgnoreCase));
        LlamaBackend.EnsureInitialized();

        var p = LLamaModelQuantizeParams.Default(); // layout checked against the library by LlamaBackend.Initialize
        p.nthread = threads > 0 ? threads : Environment.ProcessorCount;
        p.ftype = match.FType;
        var mark = LlamaBackend.ErrorMark;
        AtomicFile.Write(output, tmp =>
        {
            uint rc = NativeApi.llama_model_quantize(input, tmp, ref p);
            if (rc != 0 || !File.Exists(tmp))
                throw new BupoException($"{input}: quantizing to {match.Name} failed (llama_model_quantize returned {rc}){LlamaBackend.ErrorsSince(mark)}");
        });
    }
}
