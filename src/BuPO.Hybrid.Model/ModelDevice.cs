using TorchSharp;
using static TorchSharp.torch;

namespace BuPO.Hybrid.Model;

/// <summary>
/// Parses <c>--device</c> values (<c>cpu</c>, <c>cuda</c>, <c>cuda:N</c>) and <c>--dtype</c> values, and checks that CUDA is
/// really there. CUDA needs a CUDA build of libtorch: this repository references TorchSharp-cpu; on a GPU machine run
/// with <c>LD_LIBRARY_PATH</c> pointing at a PyTorch install's <c>torch/lib</c> (TorchSharp 0.107 loads libtorch_cuda.so
/// from there), or reference TorchSharp-cuda-linux from your own NuGet feed instead of TorchSharp-cpu.
/// </summary>
public static class ModelDevice
{
    /// <summary>The device for a string; a CUDA device when CUDA is unavailable is a <see cref="BupoException"/>.</summary>
    public static Device Parse(string? spec)
    {
        TorchRuntime.EnsureInitialized();
        var (type, index) = ParseSpec(spec);
        if (type == DeviceType.CPU) return CPU;
        if (!cuda.is_available())
            throw new BupoException($"--device {spec}: CUDA is not available to TorchSharp (this build ships CPU libtorch; " +
                                    "put a CUDA libtorch first on LD_LIBRARY_PATH, e.g. the lib folder of a PyTorch install, or use TorchSharp-cuda-linux)");
        var count = cuda.device_count();
        if (index >= count) throw new BupoException($"--device {spec}: only {count} CUDA device(s) visible");
        return new Device(DeviceType.CUDA, index);
    }

    /// <summary>
    /// The kind and index a --device value names, its syntax checked only: no libtorch is loaded and no GPU need be
    /// present (what a memory plan for another machine reads).
    /// </summary>
    /// <exception cref="BupoException">Not cpu, cuda or cuda:N.</exception>
    public static (DeviceType Type, int Index) ParseSpec(string? spec)
    {
        var s = (spec ?? "cpu").Trim().ToLowerInvariant();
        if (s == "cpu") return (DeviceType.CPU, 0);
        if (s == "cuda" || s.StartsWith("cuda:", StringComparison.Ordinal))
        {
            var index = 0;
            if (s.Length > 4 && (!int.TryParse(s.AsSpan(5), out index) || index < 0))
                throw new BupoException($"--device {spec}: expected cuda or cuda:N");
            return (DeviceType.CUDA, index);
        }
        throw new BupoException($"--device {spec}: unknown device (use cpu, cuda or cuda:N)");
    }

    /// <summary>
    /// Parses fp32/fp64/bf16 (also float32, float64, bfloat16) as one tensor type, for models that only run forward (analyze);
    /// the trainer's <c>--dtype</c> is a <see cref="TrainPrecision"/> (<see cref="ParsePrecision"/>).
    /// </summary>
    public static ScalarType ParseDType(string? spec) => (spec ?? "fp32").Trim().ToLowerInvariant() switch
    {
        "fp32" or "float32" or "f32" => ScalarType.Float32,
        "fp64" or "float64" or "f64" => ScalarType.Float64,
        "bf16" or "bfloat16" => ScalarType.BFloat16,
        _ => throw new BupoException($"--dtype {spec}: unknown type (use fp32, bf16 or fp64)"),
    };

    /// <summary>
    /// Parses the trainer's <c>--dtype</c>: fp32/float32/f32, bf16/bfloat16 (mixed: float32 masters, bf16 compute) and
    /// bf16-pure/bfloat16-pure (bf16 weights and optimizer state). The one place these strings map to a precision
    /// (<see cref="PrecisionName"/> is the way back).
    /// </summary>
    /// <exception cref="BupoException">Any other value.</exception>
    public static TrainPrecision ParsePrecision(string? spec) => TryParsePrecision(spec ?? "fp32", out var p)
        ? p
        : throw new BupoException($"--dtype {spec}: unknown type (use float32, bf16 for float32 master weights with bfloat16 compute, or bf16-pure for bfloat16 weights and optimizer state)");

    /// <summary>Parses a <c>--dtype</c> name as <see cref="ParsePrecision"/> does (case-insensitive); false for any other text.</summary>
    public static bool TryParsePrecision(string spec, out TrainPrecision precision)
    {
        ArgumentNullException.ThrowIfNull(spec);
        switch (spec.Trim().ToLowerInvariant())
        {
            case "fp32" or "float32" or "f32": precision = TrainPrecision.Float32; return true;
            case "bf16" or "bfloat16": precision = TrainPrecision.BFloat16Mixed; return true;
            case "bf16-pure" or "bfloat16-pure": precision = TrainPrecision.BFloat16Pure; return true;
            default: precision = default; return false;
        }
    }

    /// <summary>The canonical <c>--dtype</c> name of a precision (what config files and checkpoints store): float32, bf16, bf16-pure.</summary>
    public static string PrecisionName(TrainPrecision precision) => precision switch
    {
        TrainPrecision.BFloat16Mixed => "bf16",
        TrainPrecision.BFloat16Pure => "bf16-pure",
        _ => "float32",
    };

    /// <summary>True when a CUDA device can be used.</summary>
    public static bool CudaAvailable
    {
        get { TorchRuntime.EnsureInitialized(); return cuda.is_available(); }
    }
}
