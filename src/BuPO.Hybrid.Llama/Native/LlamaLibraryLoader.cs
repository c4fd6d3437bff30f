using System.Reflection;
using System.Runtime.InteropServices;

namespace BuPO.Hybrid.Llama.Native;

/// <summary>
/// Finds the llama.cpp shared libraries and maps the logical DllImport names ("llama", "ggml", "ggml-base")
/// to them. Search order: an explicit folder (LlamaBackend.Initialize / --llama-lib-dir), the environment
/// variable BUPO_LLAMA_LIB_DIR, &lt;app&gt;/llama-native/, then the folder baked into the assembly at build time
/// (metadata BuPO.LlamaDefaultLibDir: the output of scripts/fetch-llama.sh). An explicit folder or the
/// environment variable must hold the libraries: they are never skipped silently.
/// </summary>
internal static class LlamaLibraryLoader
{
    public const string EnvVar = "BUPO_LLAMA_LIB_DIR";
    public const string AppSubfolder = "llama-native";
    public const string MetadataKey = "BuPO.LlamaDefaultLibDir";

    /// <summary>The loaded libraries (all three point to the llama library when ggml is linked into it).</summary>
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

    /// <summary>Folders searched when neither an explicit folder nor the environment variable is given.</summary>
    internal static IReadOnlyList<string> DefaultSearchDirectories()
    {
        var dirs = new List<string> { Path.Combine(AppContext.BaseDirectory, AppSubfolder) };
        var baked = typeof(LlamaLibraryLoader).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .FirstOrDefault(a => a.Key == MetadataKey)?.Value;
        if (!string.IsNullOrWhiteSpace(baked)) dirs.Add(baked);
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
            $"set {EnvVar} (or pass --llama-lib-dir) to a folder holding {ExpectedFileName(LlamaNative.Llama)} " +
            "(scripts/fetch-llama.sh puts the prebuilt CPU build into .native/llama-cpu)");

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
    /// The file of one logical library in <paramref name="dir"/>: plain (libllama.so, from a source build),
    /// versioned as node-llama-cpp ships them (libllama.v0.5.0.so) or with a SONAME suffix (libllama.so.0).
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

    /// <summary>Loads ggml-base, ggml and llama from <paramref name="dir"/> (once per process) and checks their exports.</summary>
    internal static LoadedLibraries Load(string dir)
    {
        var loaded = Loaded;
        if (loaded != null) return loaded;

        var llamaPath = FindLibraryFile(dir, LlamaNative.Llama)
            ?? throw new BupoException($"llama.cpp library not found in {dir}: expected {ExpectedFileName(LlamaNative.Llama)}");
        // Load the dependencies first, by full path: the loader then matches llama's DT_NEEDED entries by SONAME
        // even where the libraries carry no RUNPATH. A build that links ggml statically has no ggml files.
        var basePath = FindLibraryFile(dir, LlamaNative.GgmlBase);
        var ggmlPath = FindLibraryFile(dir, LlamaNative.Ggml);
        nint hBase = basePath != null ? LoadOne(basePath) : 0;
        nint hGgml = ggmlPath != null ? LoadOne(ggmlPath) : 0;
        nint hLlama = LoadOne(llamaPath);
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

        loaded = new LoadedLibraries(dir, llamaPath, hLlama, hGgml, hBase);
        Volatile.Write(ref s_loaded, loaded);
        return loaded;
    }

    /// <summary>Throws a <see cref="BupoException"/> naming the first of <paramref name="symbols"/> the library does not export.</summary>
    internal static void CheckExports(nint handle, string path, IEnumerable<string> symbols)
    {
        foreach (var symbol in symbols)
            if (!NativeLibrary.TryGetExport(handle, symbol, out _))
                throw new BupoException(
                    $"{path} does not match the llama.cpp C API bupo-hybrid binds (llama.cpp of node-llama-cpp 3.22.1, " +
                    $"binaries v0.5.0): export '{symbol}' is missing; use scripts/fetch-llama.sh or a build of that release");
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
