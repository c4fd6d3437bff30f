namespace BuPO.Hybrid;

/// <summary>
/// Writes a file under a temporary name in the same folder (<c>.NAME.tmp-GUID</c>: hidden, and recognizably temporary to
/// the clean-ups that remove what a killed process left) and renames it into place, so a reader never sees a
/// half-written file, a failed write leaves nothing behind and an existing file stays as it was until the rename.
/// Every atomic write of the project goes through here.
/// </summary>
public static class AtomicFile
{
    /// <summary>Calls <paramref name="write"/> with a temporary path (which it must create), then renames it to <paramref name="path"/>.</summary>
    /// <exception cref="IOException"><paramref name="write"/> returned without creating the file.</exception>
    public static void Write(string path, Action<string> write)
    {
        var full = Path.GetFullPath(path);
        var dir = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(dir);
        var tmp = Path.Combine(dir, $".{Path.GetFileName(full)}.tmp-{Guid.NewGuid():N}");
        try
        {
            write(tmp);
            if (!File.Exists(tmp)) throw new IOException($"{full}: nothing was written");
            File.Move(tmp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }

    /// <summary>Writes text atomically.</summary>
    public static void WriteAllText(string path, string text) => Write(path, tmp => File.WriteAllText(tmp, text));

    /// <summary>Writes through a stream atomically; with <paramref name="flushToDisk"/> the data reach the disk before the
    /// rename (what a file another process will load, or a checkpoint, needs to survive a power cut).</summary>
    public static void WriteStream(string path, Action<Stream> write, bool flushToDisk = false, int bufferSize = 1 << 16) => Write(path, tmp =>
    {
        using var s = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize);
        write(s);
        if (flushToDisk) s.Flush(flushToDisk: true);
    });
}
