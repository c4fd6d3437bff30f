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
        var s = (spec ?? "cpu").Trim().ToLowerInvariant();
        if (s == "cpu") return CPU;
        if (s == "cuda" || s.StartsWith("cuda:", StringComparison.Ordinal))
        {
            var index = 0;
            if (s.Length > 4 && (!int.TryParse(s.AsSpan(5), out index) || index < 0))
                throw new BupoException($"--device {spec}: expected cuda or cuda:N");
            if (!cuda.is_available())
                throw new BupoException($"--device {spec}: CUDA is not available to TorchSharp (this build ships CPU libtorch; " +
                                        "put a CUDA libtorch first on LD_LIBRARY_PATH, e.g. the lib folder of a PyTorch install, or use TorchSharp-cuda-linux)");
            var count = cuda.device_count();
            if (index >= count) throw new BupoException($"--device {spec}: only {count} CUDA device(s) visible");
            return new Device(DeviceType.CUDA, index);
        }
        throw new BupoException($"--device {spec}: unknown device (use cpu, cuda or cuda:N)");
    }

    /// <summary>Parses fp32/fp64/bf16 (also float32, float64, bfloat16).</summary>
    public static ScalarType ParseDType(string? spec) => (spec ?? "fp32").Trim().ToLowerInvariant() switch
    {
        "fp32" or "float32" or "f32" => ScalarType.Float32,
        "fp64" or "float64" or "f64" => ScalarType.Float64,
        "bf16" or "bfloat16" => ScalarType.BFloat16,
        _ => throw new BupoException($"--dtype {spec}: unknown type (use fp32, bf16 or fp64)"),
    };

    /// <summary>True when a CUDA device can be used.</summary>
    public static bool CudaAvailable
    {
        get { TorchRuntime.EnsureInitialized(); return cuda.is_available(); }
    }
}
