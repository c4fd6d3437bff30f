using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace BuPO.Hybrid.RL.Training;

/// <summary>
/// An exclusive lock on a run folder for the life of a run: <c>run.lock</c> is held open with an exclusive lock (flock
/// on Unix, a write-denying share on Windows) and holds the owner's PID and start time. The operating system drops the
/// lock when its process dies, so a lock left by a killed run is taken over (with a note naming the dead owner); a live
/// owner makes a second run fail with one line. The file itself is never deleted while runs may contend for it (an
/// unlinked lock file would let two runs lock two different files); a clean release empties it.
/// </summary>
public sealed class RunFolderLock : IDisposable
{
    /// <summary>The lock file's name inside the run folder.</summary>
    public const string FileName = "run.lock";

    private FileStream? _stream;

    /// <summary>The lock file.</summary>
    public string Path { get; }

    /// <summary>When the previous owner died without releasing the lock: who it was (for a note), else null.</summary>
    public string? TakenOverFrom { get; }

    private RunFolderLock(string path, FileStream stream, string? takenOverFrom)
    {
        Path = path;
        _stream = stream;
        TakenOverFrom = takenOverFrom;
    }

    /// <summary>Locks <paramref name="folder"/> (which must exist).</summary>
    /// <exception cref="BupoException">Another live process holds the lock, or the lock file cannot be written.</exception>
    public static RunFolderLock Acquire(string folder)
    {
        var path = System.IO.Path.Combine(folder, FileName);
        FileStream stream;
        try
        {
            // Unix: FileShare.None takes flock(LOCK_EX | LOCK_NB). Windows: denying writers is the exclusion, and readers can still see the owner.
            stream = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, OperatingSystem.IsWindows() ? FileShare.Read : FileShare.None);
        }
        catch (IOException) when (File.Exists(path))
        {
            var owner = ReadOwner(path);
            throw new BupoException($"{folder}: another run is using this folder ({(owner.Length > 0 ? owner : "owner unknown")}; lock {path}): wait for it to finish or choose another --output");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new BupoException($"{path}: cannot create the run lock: {e.Message}");
        }
        try
        {
            string? previous = null;
            if (stream.Length > 0)
            {
                var bytes = new byte[Math.Min(stream.Length, 4096)];
                stream.ReadExactly(bytes);
                previous = Encoding.UTF8.GetString(bytes).Trim();
            }
            var me = string.Create(CultureInfo.InvariantCulture, $"pid {Environment.ProcessId} on {Environment.MachineName}, started {DateTime.UtcNow:yyyy-MM-ddTHH:mm:ssZ}");
            stream.SetLength(0);
            stream.Write(Encoding.UTF8.GetBytes(me + "\n"));
            stream.Flush(flushToDisk: true);
            return new RunFolderLock(path, stream, string.IsNullOrEmpty(previous) ? null : previous);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>Empties the file and releases the lock.</summary>
    public void Dispose()
    {
        var s = Interlocked.Exchange(ref _stream, null);
        if (s == null) return;
        try { s.SetLength(0); } catch (IOException) { }
        s.Dispose();
    }

    /// <summary>Releases the lock and deletes the file: only for a run that created the folder and failed to start.</summary>
    internal void DisposeAndDelete()
    {
        var s = Interlocked.Exchange(ref _stream, null);
        if (s == null) return;
        try { File.Delete(Path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        s.Dispose();
    }

    /// <summary>The owner line of a locked file. On Unix .NET's own open would ask for a shared flock and fail, so read through a plain descriptor.</summary>
    private static string ReadOwner(string path)
    {
        try
        {
            SafeFileHandle handle;
            if (OperatingSystem.IsWindows()) handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            else
            {
                var fd = Open(path, 0 /* O_RDONLY */);
                if (fd < 0) return "";
                handle = new SafeFileHandle(fd, ownsHandle: true);
            }
            using (handle)
            {
                var buf = new byte[512];
                var n = RandomAccess.Read(handle, buf, 0);
                return Encoding.UTF8.GetString(buf, 0, n).Trim().ReplaceLineEndings(" ");
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or DllNotFoundException or EntryPointNotFoundException)
        {
            return "";
        }
    }

    [DllImport("libc", EntryPoint = "open", SetLastError = true)]
    private static extern nint Open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);
}
