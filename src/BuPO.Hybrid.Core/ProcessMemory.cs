namespace BuPO.Hybrid;

/// <summary>The process's own memory figures, where the OS gives them (Linux's /proc/self/status).</summary>
public static class ProcessMemory
{
    /// <summary>
    /// Peak resident set size so far (VmHWM: every page ever resident at once, native and managed, file-backed
    /// mappings included), or null where /proc/self/status does not exist. It is what the memory plan is checked against.
    /// </summary>
    public static long? PeakResidentBytes() => StatusKilobytes("VmHWM:") is { } kb ? kb * 1024 : null;

    /// <summary>Current resident set size (VmRSS), or null where /proc/self/status does not exist.</summary>
    public static long? ResidentBytes() => StatusKilobytes("VmRSS:") is { } kb ? kb * 1024 : null;

    private static long? StatusKilobytes(string key)
    {
        const string path = "/proc/self/status";
        if (!File.Exists(path)) return null;
        try
        {
            foreach (var line in File.ReadLines(path))
            {
                if (!line.StartsWith(key, StringComparison.Ordinal)) continue;
                var digits = line.AsSpan(key.Length).Trim();
                if (digits.EndsWith("kB", StringComparison.Ordinal)) digits = digits[..^2].Trim();
                return long.TryParse(digits, out var kb) ? kb : null;
            }
        }
        catch (IOException) { }
        return null;
    }
}
