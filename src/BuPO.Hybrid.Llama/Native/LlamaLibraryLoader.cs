using System.Reflection;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using LLama.Native;

namespace BuPO.Hybrid.Llama.Native;

/// <summary>
/// Picks the llama.cpp build, hands it to LLamaSharp (<see cref="NativeLibraryConfig"/>, before LLamaSharp's first native
/// call) and maps our own DllImport names ("llama", "ggml", "ggml-base") to the very files LLamaSharp loaded. Where the
/// build comes from: an explicit folder (LlamaBackend.Initialize / --llama-lib-dir), else the environment variable
/// BUPO_LLAMA_LIB_DIR, else LLamaSharp.Backend.Cpu's libraries in &lt;app&gt;/runtimes/&lt;rid&gt;/native/&lt;cpu level&gt;/ (the
/// highest level this CPU runs, chosen as LLamaSharp chooses it). An explicit folder or the environment variable must
/// hold the libraries: they are never skipped silently.
/// </summary>
internal static class LlamaLibraryLoader
{
    public const string EnvVar = "BUPO_LLAMA_LIB_DIR";

    /// <summary>The loaded libraries (ggml/ggml-base handles are the llama one when ggml is linked into it).</summary>
    internal sealed record LoadedLibraries(string Directory, string LlamaPath, nint Llama, nint Ggml, nint GgmlBase);

    private static LoadedLibraries? s_loaded;
    private static int s_resolverSet;

    /// <summary>Set once per process, before any P/Invoke of this assembly can run.</summary>
#pragma warning disable CA2255 // a library needs its resolver in place before its first P/Invoke
    [System.Runtime.CompilerServices.ModuleInitializer]
#pragma warning restore CA2255
    internal static void RegisterResolver()
    {
        if (Interlocked.Exchange(ref s_resolverSet, 1) == 1) return;
        NativeLibrary.SetDllImportResolver(typeof(LlamaLibraryLoader).Assembly, Resolve);
    }

    internal static LoadedLibraries? Loaded => Volatile.Read(ref s_loaded);

    private static nint Resolve(string name, Assembly assembly, DllImportSearchPath? searchPath)
    {
        if (name is not (LlamaNative.Llama or LlamaNative.Ggml or LlamaNative.GgmlBase)) return 0;
        var libs = Loaded;
        if (libs == null)
        {
            // A native call before LlamaBackend.Initialize: initialize with the default search order.
            LlamaBackend.EnsureInitialized();
            libs = Loaded ?? throw new BupoException("llama.cpp libraries are not loaded");
        }
        return name switch { LlamaNative.Llama => libs.Llama, LlamaNative.Ggml => libs.Ggml, _ => libs.GgmlBase };
    }

    /// <summary>The runtime folder of LLamaSharp.Backend.Cpu's libraries for this OS and architecture.</summary>
    internal static string HostRuntimeFolder()
    {
        string rid = OperatingSystem.IsWindows() ? "win" : OperatingSystem.IsMacOS() ? "osx" : "linux";
        if (OperatingSystem.IsLinux() && RuntimeInformation.RuntimeIdentifier.Contains("musl", StringComparison.OrdinalIgnoreCase)) rid += "-musl";
        rid += RuntimeInformation.ProcessArchitecture switch { Architecture.Arm64 => "-arm64", _ => "-x64" };
        return Path.Combine(AppContext.BaseDirectory, "runtimes", rid, "native");
    }

    /// <summary>
    /// The CPU-level subfolders of the backend package to try, best first: those this CPU runs (avx512 needs F, BW, VBMI
    /// and VNNI, as LLamaSharp's own selection asks), then the folder itself (platforms without levels: osx, arm64).
    /// </summary>
    internal static IReadOnlyList<string> CpuLevelFolders(string runtimeFolder)
    {
        var levels = new List<string>();
        if (RuntimeInformation.ProcessArchitecture == Architecture.X64)
        {
            bool vnni = X86Base.IsSupported && (X86Base.CpuId(7, 0).Ecx & (1 << 11)) != 0;
            if (Avx512F.IsSupported && Avx512BW.IsSupported && Avx512Vbmi.IsSupported && vnni) levels.Add("avx512");
            if (Avx2.IsSupported) levels.Add("avx2");
            if (Avx.IsSupported) levels.Add("avx");
            levels.Add("noavx");
        }
        var dirs = levels.Select(l => Path.Combine(runtimeFolder, l)).ToList();
        dirs.Add(runtimeFolder);
        return dirs;
    }

    /// <summary>
    /// Picks the folder holding the llama library: <paramref name="explicitDir"/> if given, else
    /// <paramref name="envDir"/> if given, else the first of <paramref name="fallbackDirs"/> that holds it.
    /// Throws one <see cref="BupoException"/> naming the folder(s) otherwise.
    /// </summary>
    internal static string ResolveDirectory(string? explicitDir, string? envDir, IReadOnlyList<string> fallbackDirs)
    {
        if (!string.IsNullOrWhiteSpace(explicitDir)) return Require(explicitDir, "the folder given with --llama-lib-dir / LlamaBackend.Initialize");
        if (!string.IsNullOrWhiteSpace(envDir)) return Require(envDir, $"the folder given by {EnvVar}");
        foreach (var dir in fallbackDirs)
            if (Directory.Exists(dir) && FindLibraryFile(dir, LlamaNative.Llama) != null) return Path.GetFullPath(dir);
        throw new BupoException(
            $"llama.cpp libraries not found: searched {string.Join(", ", fallbackDirs.Select(d => Path.GetFullPath(d)))}; " +
            $"they come with the LLamaSharp.Backend.Cpu package (rebuild to restore it), or set {EnvVar} (or pass --llama-lib-dir) " +
            $"to a folder holding {ExpectedFileName(LlamaNative.Llama)} of a llama.cpp build of commit {LlamaBackend.LlamaCppCommit}");

        static string Require(string dir, string origin)
        {
            var full = Path.GetFullPath(dir);
            if (!Directory.Exists(full)) throw new BupoException($"llama.cpp library folder {full} ({origin}) does not exist");
            if (FindLibraryFile(full, LlamaNative.Llama) == null)
                throw new BupoException($"llama.cpp library not found in {full} ({origin}): expected {ExpectedFileName(LlamaNative.Llama)}");
            return full;
        }
    }

    private static string ExpectedFileName(string name) =>
        OperatingSystem.IsWindows() ? $"{name}.dll"
        : OperatingSystem.IsMacOS() ? $"lib{name}.dylib"
        : $"lib{name}.so or lib{name}.v*.so";

    /// <summary>
    /// The file of one logical library in <paramref name="dir"/>: plain (libllama.so, from a source build or the NuGet
    /// backend), versioned as node-llama-cpp ships them (libllama.v0.5.0.so) or with a SONAME suffix (libllama.so.0).
    /// </summary>
    internal static string? FindLibraryFile(string dir, string name)
    {
        if (!Directory.Exists(dir)) return null;
        string[] exact, patterns;
        if (OperatingSystem.IsWindows()) { exact = [$"{name}.dll", $"lib{name}.dll"]; patterns = []; }
        else if (OperatingSystem.IsMacOS()) { exact = [$"lib{name}.dylib"]; patterns = [$"lib{name}.*.dylib"]; }
        else { exact = [$"lib{name}.so"]; patterns = [$"lib{name}.v*.so", $"lib{name}.so.*"]; }
        foreach (var e in exact)
        {
            var p = Path.Combine(dir, e);
            if (File.Exists(p)) return p;
        }
        foreach (var pattern in patterns)
        {
            // Shortest (then ordinal) name first: libllama.so.0 before libllama.so.0.0.1234.
            var hit = Directory.EnumerateFiles(dir, pattern)
                .OrderBy(f => f.Length).ThenBy(f => f, StringComparer.Ordinal).FirstOrDefault();
            if (hit != null) return hit;
        }
        return null;
    }

    /// <summary>
    /// Has LLamaSharp load the llama library of <paramref name="dir"/> (once per process), then opens the same files for
    /// our own imports and checks their exports. <paramref name="log"/> receives llama.cpp's (and LLamaSharp's loader's)
    /// log lines from then on.
    /// </summary>
    internal static LoadedLibraries Load(string dir, NativeLogConfig.LLamaLogCallback log)
    {
        var loaded = Loaded;
        if (loaded != null) return loaded;

        var llamaPath = FindLibraryFile(dir, LlamaNative.Llama)
            ?? throw new BupoException($"llama.cpp library not found in {dir}: expected {ExpectedFileName(LlamaNative.Llama)}");
        if (NativeLibraryConfig.LLama.LibraryHasLoaded)
            throw new BupoException("LLamaSharp loaded its llama.cpp library before LlamaBackend.Initialize: reach LLamaSharp only through BuPO.Hybrid.Llama");
        // Files that are not libraries fail here with dlopen's own words, before LLamaSharp sees them.
        var basePath = FindLibraryFile(dir, LlamaNative.GgmlBase);
        var ggmlPath = FindLibraryFile(dir, LlamaNative.Ggml);
        nint hBase = basePath != null ? LoadOne(basePath) : 0;
        nint hGgml = ggmlPath != null ? LoadOne(ggmlPath) : 0;
        nint hLlama = LoadOne(llamaPath);

        // LLamaSharp loads exactly this file (dlopen of the same path: the same handle as ours) and then runs
        // llama_backend_init in its static constructor.
        NativeLibraryConfig.All.WithLibrary(llamaPath, null).WithLogCallback(log);
        try
        {
            NativeApi.llama_empty_call();
        }
        catch (Exception e) when (e is TypeInitializationException or DllNotFoundException or EntryPointNotFoundException or LLama.Exceptions.RuntimeError)
        {
            var inner = e is TypeInitializationException { InnerException: { } ie } ? ie : e;
            throw new BupoException($"LLamaSharp could not load {llamaPath}: {inner.Message.ReplaceLineEndings(" ").Trim()}", e);
        }

        if (hBase == 0) hBase = hGgml != 0 ? hGgml : hLlama;
        if (hGgml == 0) hGgml = hLlama;
        foreach (var (lib, symbols) in LlamaNative.RequiredExports)
        {
            var (handle, path) = lib switch
            {
                LlamaNative.Llama => (hLlama, llamaPath),
                LlamaNative.Ggml => (hGgml, ggmlPath ?? llamaPath),
                _ => (hBase, basePath ?? ggmlPath ?? llamaPath),
            };
            CheckExports(handle, path, symbols);
        }

        loaded = new LoadedLibraries(Path.GetDirectoryName(llamaPath)!, llamaPath, hLlama, hGgml, hBase);
        Volatile.Write(ref s_loaded, loaded);
        return loaded;
    }

    /// <summary>Throws a <see cref="BupoException"/> naming the first of <paramref name="symbols"/> the library does not export.</summary>
    internal static void CheckExports(nint handle, string path, IEnumerable<string> symbols)
    {
        foreach (var symbol in symbols)
            if (!NativeLibrary.TryGetExport(handle, symbol, out _))
                throw new BupoException(
                    $"{path} does not match the llama.cpp C API LLamaSharp {LlamaBackend.LlamaSharpVersion} binds (llama.cpp {LlamaBackend.LlamaCppCommit}): " +
                    $"export '{symbol}' is missing; use LLamaSharp.Backend.Cpu's libraries or a build of that commit");
    }

    /// <summary>dlopen by full path; failures become a <see cref="BupoException"/> quoting the loader's message.</summary>
    internal static nint LoadOne(string path)
    {
        try
        {
            return NativeLibrary.Load(path);
        }
        catch (Exception e) when (e is DllNotFoundException or BadImageFormatException)
        {
            // .NET's message carries dlopen's own (wrong ELF class, missing dependency, GLIBC version...).
            var msg = e.Message.ReplaceLineEndings(" ").Trim();
            throw new BupoException($"cannot load {path} (wrong architecture, missing dependency or not a shared library?): {msg}", e);
        }
    }
}
