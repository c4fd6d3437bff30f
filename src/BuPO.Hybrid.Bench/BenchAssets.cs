using BuPO.Hybrid.Data;

namespace BuPO.Hybrid.Bench;

/// <summary>Where the benchmarks find the shared assets (models, vocabularies, data) beside the checkout.</summary>
public static class BenchAssets
{
    /// <summary>
    /// The shared assets folder: BUPO_SHARED_DIR, else the parent of the data folder <see cref="PromptDataset.FindDataRoot"/>
    /// finds (BUPO_DATA_DIR or ../shared/data); null when absent.
    /// </summary>
    public static string? SharedDir()
    {
        if (SharedFolder.Find() is { } shared) return shared;
        if (!string.IsNullOrEmpty(Environment.GetEnvironmentVariable(SharedFolder.EnvironmentVariable))) return null;
        var data = DataDir();
        return data is null ? null : Path.GetDirectoryName(Path.GetFullPath(data).TrimEnd(Path.DirectorySeparatorChar));
    }

    /// <summary>The data folder (GSM8K, MATH500 JSONL), or null.</summary>
    public static string? DataDir()
    {
        try { return PromptDataset.FindDataRoot(); }
        catch (BupoException) { return null; }
    }
}
