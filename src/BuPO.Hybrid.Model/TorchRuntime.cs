using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace BuPO.Hybrid.Model;

/// <summary>
/// Prepares TorchSharp's native libraries before first use. On systems whose libstdc++ lacks
/// GLIBCXX_3.4.32 the build patched libLibTorchSharp.so (scripts/fix-torchsharp.sh) and placed
/// <c>libbupo_glibcxx_compat.so</c> next to it; that library must be in the global symbol scope
/// before TorchSharp loads, so it is loaded here with RTLD_GLOBAL.
/// </summary>
public static class TorchRuntime
{
    private const int RtldNow = 2, RtldGlobal = 0x100;
    private static int _initialized;

    [DllImport("libc.so.6", EntryPoint = "dlopen")]
    private static extern IntPtr DlOpen([MarshalAs(UnmanagedType.LPUTF8Str)] string fileName, int flags);

    [DllImport("libc.so.6", EntryPoint = "dlerror")]
    private static extern IntPtr DlError();

    [ModuleInitializer]
    internal static void InitializeOnLoad() => EnsureInitialized();

    /// <summary>Loads the compatibility library if the build placed one. Safe to call many times.</summary>
    public static void EnsureInitialized()
    {
        if (Interlocked.Exchange(ref _initialized, 1) == 1 || !OperatingSystem.IsLinux()) return;
        foreach (var dir in new[] { AppContext.BaseDirectory, Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native") })
        {
            var path = Path.Combine(dir, "libbupo_glibcxx_compat.so");
            if (!File.Exists(path)) continue;
            if (DlOpen(path, RtldNow | RtldGlobal) == IntPtr.Zero)
                throw new InvalidOperationException($"cannot load {path}: {Marshal.PtrToStringAnsi(DlError())}");
            return;
        }
    }
}
