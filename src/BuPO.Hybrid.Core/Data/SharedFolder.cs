namespace BuPO.Hybrid.Data;

/// <summary>
/// The shared assets folder (models, vocabularies, datasets) that sits beside a checkout as <c>../shared</c>: the one
/// lookup the datasets, the benches and the random models use. A user's clone usually has none; callers fall back
/// (generated vocabularies) or say what is missing.
/// </summary>
public static class SharedFolder
{
    /// <summary>Environment variable naming the shared folder explicitly.</summary>
    public const string EnvironmentVariable = "BUPO_SHARED_DIR";

    /// <summary>
    /// BUPO_SHARED_DIR when set (and present), else <c>../shared</c> beside the repository holding the current folder or
    /// the application (the first folder above either with BuPO.Hybrid.sln); null when there is none.
    /// </summary>
    public static string? Find()
    {
        var env = Environment.GetEnvironmentVariable(EnvironmentVariable);
        if (!string.IsNullOrEmpty(env)) return Directory.Exists(env) ? Path.GetFullPath(env) : null;
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        {
            for (var d = new DirectoryInfo(start); d != null; d = d.Parent)
            {
                if (!File.Exists(Path.Combine(d.FullName, "BuPO.Hybrid.sln"))) continue;
                var candidate = Path.GetFullPath(Path.Combine(d.FullName, "..", "shared"));
                if (Directory.Exists(candidate)) return candidate;
                break;
            }
        }
        return null;
    }

    /// <summary>The file at <paramref name="relative"/> (path parts) under the shared folder, or null when either is absent.</summary>
    public static string? FindFile(params string[] relative)
    {
        if (Find() is not { } dir) return null;
        var path = Path.Combine([dir, .. relative]);
        return File.Exists(path) ? path : null;
    }
}
