using System.Text;
using BuPO.Hybrid.Llama.Native;

namespace BuPO.Hybrid.Llama;

/// <summary>Severity of a llama.cpp / ggml log line (ggml_log_level).</summary>
public enum LlamaLogLevel
{
    Debug = 1,
    Info = 2,
    Warning = 3,
    Error = 4,
}

/// <summary>A backend device ggml found (CPU, GPU, accelerator).</summary>
public sealed record LlamaDevice(string Name, string Description, string Type);

/// <summary>
/// Process-wide llama.cpp setup: picks the build (LLamaSharp.Backend.Cpu's by default), has LLamaSharp load it (which
/// runs <c>llama_backend_init</c>), checks that the structs LLamaSharp passes by value match the loaded library, and
/// lists ggml's devices (loading backend libraries from the build's folder when none is linked in). Idempotent and
/// thread-safe; every other type calls <see cref="EnsureInitialized"/> before its first native call.
/// </summary>
public static unsafe class LlamaBackend
{
    private static readonly object Gate = new();
    private static volatile bool s_initialized;
    private static volatile Action<LlamaLogLevel, string>? s_sink;
    private static volatile int s_minLevel = (int)LlamaLogLevel.Warning;
    private static IReadOnlyList<LlamaDevice> s_devices = [];

    /// <summary>Environment variable naming the folder of the llama.cpp libraries.</summary>
    public const string LibDirEnvironmentVariable = LlamaLibraryLoader.EnvVar;

    /// <summary>The LLamaSharp release the binding is built on.</summary>
    public const string LlamaSharpVersion = "0.30.0";

    /// <summary>The llama.cpp commit LLamaSharp <see cref="LlamaSharpVersion"/> binds (its README's version map); another build must be of it.</summary>
    public const string LlamaCppCommit = "815a2a59";

    /// <summary>True once the libraries are loaded and the backend initialized.</summary>
    public static bool IsInitialized => s_initialized;

    /// <summary>Folder the libraries were loaded from (null before initialization).</summary>
    public static string? LibraryDirectory => LlamaLibraryLoader.Loaded?.Directory;

    /// <summary>The llama library file LLamaSharp loaded (null before initialization).</summary>
    public static string? LibraryPath => LlamaLibraryLoader.Loaded?.LlamaPath;

    /// <summary>Devices ggml registered (CPU first; a GPU only with a GPU build of llama.cpp).</summary>
    public static IReadOnlyList<LlamaDevice> Devices { get { EnsureInitialized(); return s_devices; } }

    /// <summary>llama.cpp's system info line (SIMD features of the chosen CPU backend).</summary>
    public static string SystemInfo { get { EnsureInitialized(); return LlamaNative.Str(LLama.Native.NativeApi.llama_print_system_info()) ?? ""; } }

    /// <summary>
    /// Loads llama.cpp and initializes its backend (once per process; later calls only update the log sink).
    /// </summary>
    /// <param name="libDir">Folder of libllama/libggml* of a build of llama.cpp <see cref="LlamaCppCommit"/> (e.g. a CUDA
    /// build); null = BUPO_LLAMA_LIB_DIR, else LLamaSharp.Backend.Cpu's libraries in &lt;app&gt;/runtimes/.</param>
    /// <param name="log">Receives llama.cpp's log lines at <paramref name="minLevel"/> and above; null = warnings and errors to stderr.</param>
    /// <param name="minLevel">Lines below this level are dropped (quiet by default).</param>
    /// <exception cref="BupoException">Libraries missing, unloadable, of another llama.cpp commit, or no device found.</exception>
    public static void Initialize(string? libDir = null, Action<LlamaLogLevel, string>? log = null, LlamaLogLevel minLevel = LlamaLogLevel.Warning)
    {
        s_sink = log;
        s_minLevel = (int)minLevel;
        lock (Gate)
        {
            if (s_initialized)
            {
                var current = LibraryDirectory!;
                if (!string.IsNullOrWhiteSpace(libDir) && !SameDirectory(libDir, current))
                    throw new BupoException($"llama.cpp is already loaded from {current}; cannot switch to {Path.GetFullPath(libDir)} in the same process");
                return;
            }
            var dir = LlamaLibraryLoader.ResolveDirectory(libDir, Environment.GetEnvironmentVariable(LlamaLibraryLoader.EnvVar),
                LlamaLibraryLoader.CpuLevelFolders(LlamaLibraryLoader.HostRuntimeFolder()));
            var libs = LlamaLibraryLoader.Load(dir, OnLog);
            LlamaLayout.Check(libs);

            // LLamaSharp's builds link the CPU backend into libggml; builds with GGML_BACKEND_DL keep every backend in a
            // library of its own that must be loaded from the build's folder, or no device exists.
            if (LlamaNative.ggml_backend_dev_count() == 0) LlamaNative.ggml_backend_load_all_from_path(libs.Directory);
            var devices = new List<LlamaDevice>();
            var n = (int)LlamaNative.ggml_backend_dev_count();
            for (int i = 0; i < n; i++)
            {
                var dev = LlamaNative.ggml_backend_dev_get((nuint)i);
                if (dev == 0) continue;
                devices.Add(new LlamaDevice(LlamaNative.Str(LlamaNative.ggml_backend_dev_name(dev)) ?? "?",
                    LlamaNative.Str(LlamaNative.ggml_backend_dev_description(dev)) ?? "",
                    LlamaNative.ggml_backend_dev_type(dev) switch { 0 => "CPU", 1 => "GPU", 2 => "IGPU", 3 => "ACCEL", var t => t.ToString(System.Globalization.CultureInfo.InvariantCulture) }));
            }
            if (devices.Count == 0)
                throw new BupoException($"llama.cpp loaded from {libs.Directory} but no ggml device was found: the folder should hold a CPU backend (libggml-cpu*){ErrorsSince(0)}");
            s_devices = devices;
            s_initialized = true;
        }
    }

    /// <summary>Initializes with the default search order unless already initialized.</summary>
    public static void EnsureInitialized()
    {
        if (!s_initialized) Initialize(log: s_sink, minLevel: (LlamaLogLevel)s_minLevel);
    }

    private static bool SameDirectory(string a, string b) =>
        string.Equals(Path.TrimEndingDirectorySeparator(Path.GetFullPath(a)), Path.TrimEndingDirectorySeparator(Path.GetFullPath(b)),
            OperatingSystem.IsWindows() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal);

    // ---- logging ----

    [ThreadStatic] private static StringBuilder? t_pending;
    [ThreadStatic] private static int t_pendingLevel;
    private static long s_errorCount;
    private static readonly Queue<(long Seq, string Line)> s_recentErrors = new();

    /// <summary>Marker for <see cref="ErrorsSince"/>.</summary>
    internal static long ErrorMark => Interlocked.Read(ref s_errorCount);

    /// <summary>"; llama.cpp: LINE" for the error lines logged after <paramref name="mark"/> (the last 3), or "".</summary>
    internal static string ErrorsSince(long mark)
    {
        lock (s_recentErrors)
        {
            var lines = s_recentErrors.Where(e => e.Seq > mark).Select(e => e.Line).TakeLast(3).ToList();
            return lines.Count == 0 ? "" : "; llama.cpp: " + string.Join(" | ", lines);
        }
    }

    /// <summary>llama.cpp's log callback (set through LLamaSharp, which keeps the delegate alive): assembles lines.</summary>
    private static void OnLog(LLama.Native.LLamaLogLevel level, string piece)
    {
        try
        {
            if (string.IsNullOrEmpty(piece)) return;
            int lvl = (int)level;
            var sb = t_pending ??= new StringBuilder();
            if (lvl is >= 1 and <= 4 && sb.Length == 0) t_pendingLevel = lvl;      // 5 = CONT: keeps the level
            else if (sb.Length == 0) t_pendingLevel = t_pendingLevel == 0 ? (int)LlamaLogLevel.Info : t_pendingLevel;
            sb.Append(piece);
            if (!piece.EndsWith('\n')) return;
            var line = sb.ToString().TrimEnd('\n', '\r');
            sb.Clear();
            Emit((LlamaLogLevel)t_pendingLevel, line);
        }
        catch
        {
            // never let an exception cross into native code
        }
    }

    private static void Emit(LlamaLogLevel level, string line)
    {
        if (level == LlamaLogLevel.Error)
        {
            lock (s_recentErrors)
            {
                s_recentErrors.Enqueue((Interlocked.Increment(ref s_errorCount), line.Trim()));
                while (s_recentErrors.Count > 16) s_recentErrors.Dequeue();
            }
        }
        if ((int)level < s_minLevel) return;
        var sink = s_sink;
        if (sink != null) sink(level, line);
        else Console.Error.WriteLine($"llama.cpp {(level == LlamaLogLevel.Error ? "error" : "warning")}: {line}");
    }
}
