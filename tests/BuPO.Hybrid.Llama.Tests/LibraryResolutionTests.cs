using System.Runtime.InteropServices;
using BuPO.Hybrid.Llama.Native;

namespace BuPO.Hybrid.Llama.Tests;

/// <summary>Tests the folder/file resolution functions directly, never the process-wide resolver.</summary>
public class LibraryResolutionTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("bupo-llama-res-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void ExplicitEmptyFolderIsNamed()
    {
        var e = Assert.Throws<BupoException>(() => LlamaLibraryLoader.ResolveDirectory(_dir, envDir: "/ignored", fallbackDirs: []));
        Assert.Contains(_dir, e.Message);
        Assert.Contains("--llama-lib-dir", e.Message);
        Assert.DoesNotContain("\n", e.Message);
    }

    [Fact]
    public void EnvironmentFolderIsNamedWithTheVariable()
    {
        var e = Assert.Throws<BupoException>(() => LlamaLibraryLoader.ResolveDirectory(null, envDir: _dir, fallbackDirs: []));
        Assert.Contains(_dir, e.Message);
        Assert.Contains("BUPO_LLAMA_LIB_DIR", e.Message);
    }

    [Fact]
    public void MissingFolderIsNamed()
    {
        var missing = Path.Combine(_dir, "nope");
        var e = Assert.Throws<BupoException>(() => LlamaLibraryLoader.ResolveDirectory(missing, null, []));
        Assert.Contains(missing, e.Message);
        Assert.Contains("does not exist", e.Message);
    }

    [Fact]
    public void NothingFoundNamesEveryFolderSearchedAndTheVariable()
    {
        var a = Path.Combine(_dir, "a");
        var b = Path.Combine(_dir, "b");
        Directory.CreateDirectory(a);
        var e = Assert.Throws<BupoException>(() => LlamaLibraryLoader.ResolveDirectory(null, null, [a, b]));
        Assert.Contains(a, e.Message);
        Assert.Contains(b, e.Message);
        Assert.Contains("BUPO_LLAMA_LIB_DIR", e.Message);
    }

    [Fact]
    public void FallbacksAreSearchedInOrder()
    {
        if (!OperatingSystem.IsLinux()) Assert.Skip("file naming checked for Linux");
        var a = Path.Combine(_dir, "a");
        var b = Path.Combine(_dir, "b");
        Directory.CreateDirectory(a);
        Directory.CreateDirectory(b);
        File.WriteAllText(Path.Combine(b, "libllama.v0.5.0.so"), "");
        Assert.Equal(b, LlamaLibraryLoader.ResolveDirectory(null, null, [a, b]));
        File.WriteAllText(Path.Combine(a, "libllama.so"), "");
        Assert.Equal(a, LlamaLibraryLoader.ResolveDirectory(null, null, [a, b]));
        Assert.Equal(b, LlamaLibraryLoader.ResolveDirectory(b, null, [a]));
    }

    [Fact]
    public void AcceptsVersionedAndPlainFileNames()
    {
        if (!OperatingSystem.IsLinux()) Assert.Skip("file naming checked for Linux");
        File.WriteAllText(Path.Combine(_dir, "libggml-base.so"), "");
        File.WriteAllText(Path.Combine(_dir, "libggml-cpu-haswell.so"), "");
        File.WriteAllText(Path.Combine(_dir, "libllama-common.so"), "");
        Assert.Null(LlamaLibraryLoader.FindLibraryFile(_dir, "llama"));   // libllama-common is not libllama
        Assert.Null(LlamaLibraryLoader.FindLibraryFile(_dir, "ggml"));    // nor libggml-base / libggml-cpu-*
        File.WriteAllText(Path.Combine(_dir, "libggml.v0.5.0.so"), "");
        File.WriteAllText(Path.Combine(_dir, "libllama.so.0"), "");
        Assert.EndsWith("libggml.v0.5.0.so", LlamaLibraryLoader.FindLibraryFile(_dir, "ggml"));
        Assert.EndsWith("libggml-base.so", LlamaLibraryLoader.FindLibraryFile(_dir, "ggml-base"));
        Assert.EndsWith("libllama.so.0", LlamaLibraryLoader.FindLibraryFile(_dir, "llama"));
        File.WriteAllText(Path.Combine(_dir, "libllama.so"), "");
        Assert.EndsWith("libllama.so", LlamaLibraryLoader.FindLibraryFile(_dir, "llama"));
    }

    [Fact]
    public void UnloadableFileQuotesTheLoader()
    {
        var fake = Path.Combine(_dir, OperatingSystem.IsWindows() ? "llama.dll" : "libllama.so");
        File.WriteAllText(fake, "this is not an ELF file");
        var e = Assert.Throws<BupoException>(() => LlamaLibraryLoader.LoadOne(fake));
        Assert.Contains(fake, e.Message);
        Assert.Contains("cannot load", e.Message);
        if (OperatingSystem.IsLinux()) Assert.True(e.Message.Contains("invalid ELF header") || e.Message.Contains("too short"), e.Message); // dlopen's own words
    }

    [Fact]
    public void MissingExportIsNamed()
    {
        var dir = LlamaLibraryLoader.CpuLevelFolders(LlamaLibraryLoader.HostRuntimeFolder()).FirstOrDefault(d => LlamaLibraryLoader.FindLibraryFile(d, "ggml-base") != null);
        if (dir == null) Assert.Skip("LLamaSharp.Backend.Cpu has no libraries for this platform");
        var path = LlamaLibraryLoader.FindLibraryFile(dir, "ggml-base")!;
        var h = NativeLibrary.Load(path);
        LlamaLibraryLoader.CheckExports(h, path, ["ggml_nbytes"]);
        var e = Assert.Throws<BupoException>(() => LlamaLibraryLoader.CheckExports(h, path, ["ggml_nbytes", "llama_no_such_function"]));
        Assert.Contains("'llama_no_such_function'", e.Message);
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void TheDefaultIsTheBackendPackagesHostFolderAndNoOtherPlatformIsCopied()
    {
        var host = LlamaLibraryLoader.HostRuntimeFolder();
        var dirs = LlamaLibraryLoader.CpuLevelFolders(host);
        Assert.StartsWith(Path.Combine(AppContext.BaseDirectory, "runtimes"), host);
        Assert.Equal(host, dirs[^1]);
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64) return;
        Assert.EndsWith(Path.Combine("runtimes", "linux-x64", "native"), host);
        Assert.Equal("noavx", Path.GetFileName(dirs[^2]));
        // The build copied the host's runtime folder (every CPU level: the machine that runs it may differ) and no other.
        Assert.Equal(["linux-x64"], Directory.GetDirectories(Path.Combine(AppContext.BaseDirectory, "runtimes")).Select(Path.GetFileName));
        foreach (var level in new[] { "noavx", "avx", "avx2", "avx512" })
            Assert.NotNull(LlamaLibraryLoader.FindLibraryFile(Path.Combine(host, level), "llama"));
        Assert.Empty(Directory.GetFiles(host, "*mtmd*", SearchOption.AllDirectories));
        // What LLamaSharp loaded is the first level this CPU runs.
        var picked = LlamaLibraryLoader.ResolveDirectory(null, null, dirs);
        Assert.Equal(dirs.First(d => Directory.Exists(d)), picked);
        LlamaBackend.EnsureInitialized();
        if (Environment.GetEnvironmentVariable(LlamaLibraryLoader.EnvVar) is null or "") Assert.Equal(picked, LlamaBackend.LibraryDirectory);
    }
}
