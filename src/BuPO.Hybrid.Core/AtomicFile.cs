namespace BuPO.Hybrid;

/// <summary>
/// Writes a file under a temporary name in the same folder and renames it into place, so a reader never
/// sees a half-written file and a failed write leaves nothing behind.
/// </summary>
public static class AtomicFile
{
    /// <summary>Calls <paramref name="write"/> with a temporary path, then renames it to <paramref name="path"/>.</summary>
    public static void Write(string path, Action<string> write)
    {
        var full = Path.GetFullPath(path);
        var dir = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(dir);
        var tmp = Path.Combine(dir, $".{Path.GetFileName(full)}.tmp-{Guid.NewGuid():N}");
        try
        {
            write(tmp);
            File.Move(tmp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { }
            throw;
        }
    }

    /// <summary>Writes text atomically.</summary>
    public static void WriteAllText(string path, string text) => Write(path, tmp => File.WriteAllText(tmp, text));

    /// <summary>Writes through a stream atomically.</summary>
    public static void WriteStream(string path, Action<Stream> write) => Write(path, tmp =>
    {
        using var s = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16);
        write(s);
    });
}
