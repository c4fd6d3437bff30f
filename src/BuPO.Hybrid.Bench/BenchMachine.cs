using System.Diagnostics;
using System.Globalization;

namespace BuPO.Hybrid.Bench;

/// <summary>
/// The machine a benchmark ran on, as far as it affects the numbers: processors, load (this machine is often shared) and
/// the process's resident memory.
/// </summary>
public static class BenchMachine
{
    /// <summary>The 1-minute load average (Linux /proc/loadavg), or null.</summary>
    public static double? LoadAverage()
    {
        try
        {
            if (!File.Exists("/proc/loadavg")) return null;
            var first = File.ReadAllText("/proc/loadavg").Split(' ')[0];
            return double.TryParse(first, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) ? v : null;
        }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
    }

    /// <summary>Current resident memory of this process in GiB (Linux /proc/self/status VmRSS), or null.</summary>
    public static double? RssGiB()
    {
        try
        {
            if (!File.Exists("/proc/self/status")) return null;
            foreach (var line in File.ReadLines("/proc/self/status"))
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal)
                    && long.TryParse(line[6..].Trim().Split(' ')[0], NumberStyles.Integer, CultureInfo.InvariantCulture, out var kb))
                    return kb / (1024.0 * 1024);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return null;
    }

    /// <summary>Peak resident memory of this process in GiB (Linux VmHWM), or null.</summary>
    public static double? PeakRssGiB()
    {
        try
        {
            using var p = Process.GetCurrentProcess();
            return p.PeakWorkingSet64 > 0 ? p.PeakWorkingSet64 / (1024.0 * 1024 * 1024) : null;
        }
        catch (InvalidOperationException) { return null; }
    }

    /// <summary>Synchronizes a CUDA device so a timer read afterwards covers the queued kernels (no-op on the CPU).</summary>
    public static void Synchronize(TorchSharp.torch.Device device)
    {
        if (device.type == TorchSharp.DeviceType.CUDA) TorchSharp.torch.cuda.synchronize(device);
    }
}
