using System.Runtime.CompilerServices;

namespace BuPO.Hybrid.Tests.Support;

/// <summary>
/// Locates ../shared (models and data beside the checkout). A user's fresh clone has none: tests that need
/// it call <see cref="RequireFile"/> and are skipped with a clear reason there; CI (BUPO_REQUIRE_SHARED=1,
/// set by .ci/run) turns a missing asset into a failure instead.
/// </summary>
public static class SharedAssets
{
    /// <summary>The repository root (the folder holding BuPO.Hybrid.sln).</summary>
    public static string RepoRoot { get; } = FindRepoRoot();

    /// <summary>The shared folder, or null when absent.</summary>
    public static string? Dir { get; } = FindShared();

    public static string StoriesModel => Path.Combine(Dir ?? "../shared", "models", "stories260K.gguf");
    public static string StoriesGreedyReference => Path.Combine(Dir ?? "../shared", "models", "stories260K.greedy_reference.txt");
    public static string Qwen2Vocab => Path.Combine(Dir ?? "../shared", "models", "vocab", "ggml-vocab-qwen2.gguf");
    public static string DataFile(string dataset, string split) => Path.Combine(Dir ?? "../shared", "data", dataset, split + ".jsonl");

    /// <summary>Returns the path of a shared file; when absent, skips the test (in CI, where BUPO_REQUIRE_SHARED=1, fails it).</summary>
    public static string RequireFile(string path)
    {
        if (File.Exists(path)) return path;
        var reason = $"shared asset not found: {path} (the ../shared folder beside the checkout; present in CI)";
        if (Environment.GetEnvironmentVariable("BUPO_REQUIRE_SHARED") == "1") throw new FileNotFoundException(reason, path);
        Assert.Skip(reason);
        return path;
    }

    private static string FindRepoRoot([CallerFilePath] string thisFile = "")
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "BuPO.Hybrid.sln"))) return d.FullName;
        return Path.GetFullPath(Path.Combine(Path.GetDirectoryName(thisFile)!, "..", ".."));
    }

    private static string? FindShared()
    {
        var env = Environment.GetEnvironmentVariable("BUPO_SHARED_DIR");
        if (!string.IsNullOrEmpty(env) && Directory.Exists(env)) return Path.GetFullPath(env);
        var p = Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared"));
        return Directory.Exists(p) ? p : null;
    }
}
