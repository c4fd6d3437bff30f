using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;

namespace BuPO.Hybrid.Cli.Tests;

/// <summary>How the application's assemblies depend on each other and on LLamaSharp.</summary>
public class DependencyTests
{
    private static IEnumerable<(string Assembly, string[] References)> OurAssemblies()
    {
        var dir = AppContext.BaseDirectory;
        foreach (var path in Directory.GetFiles(dir, "BuPO.Hybrid.*.dll").Append(Path.Combine(dir, "bupo-hybrid.dll")))
        {
            if (Path.GetFileName(path).Contains(".Tests", StringComparison.Ordinal)) continue;
            using var pe = new PEReader(File.OpenRead(path));
            var md = pe.GetMetadataReader();
            var refs = md.AssemblyReferences.Select(h => md.GetString(md.GetAssemblyReference(h).Name)).ToArray();
            yield return (Path.GetFileNameWithoutExtension(path), refs);
        }
    }

    [Fact]
    public void OnlyTheLlamaProjectReferencesLLamaSharp()
    {
        var all = OurAssemblies().ToList();
        Assert.Contains(all, a => a.Assembly == "bupo-hybrid");
        Assert.Contains(all, a => a.Assembly == "BuPO.Hybrid.RL");
        var users = all.Where(a => a.References.Contains("LLamaSharp")).Select(a => a.Assembly).ToArray();
        Assert.Equal(["BuPO.Hybrid.Llama"], users);
    }

    [Fact]
    public void TheTrainerModelDoesNotReferenceLlamaCpp()
    {
        var model = OurAssemblies().Single(a => a.Assembly == "BuPO.Hybrid.Model");
        Assert.DoesNotContain("BuPO.Hybrid.Llama", model.References);
        Assert.Contains("BuPO.Hybrid.Gguf", model.References);
    }

    [Fact]
    public void TheManagedTokenizerSitsBesideTheLibrariesNotBelowThem()
    {
        // ITextTokenizer lives in Core; the managed tokenizer is measured by the Bench library (bench tokenize) only.
        var users = OurAssemblies().Where(a => a.References.Contains("BuPO.Hybrid.Tokenizers")).Select(a => a.Assembly).ToArray();
        Assert.Equal(["BuPO.Hybrid.Bench"], users);
    }

    [Fact]
    public void BenchReferencesWhatItMeasuresAndOnlyTheCliReferencesBench()
    {
        var all = OurAssemblies().ToDictionary(a => a.Assembly, a => a.References);
        // Rollouts, the managed tokenizer, the trainer (RL over Model), weight sync and the lens analysis (Analysis).
        foreach (var measured in new[] { "BuPO.Hybrid.Rollout", "BuPO.Hybrid.Tokenizers", "BuPO.Hybrid.RL", "BuPO.Hybrid.Model", "BuPO.Hybrid.Analysis", "BuPO.Hybrid.Llama" })
            Assert.Contains(measured, all["BuPO.Hybrid.Bench"]);
        Assert.DoesNotContain(all["BuPO.Hybrid.Bench"], r => r is "bupo-hybrid" or "BuPO.Hybrid.Demo" or "BuPO.Hybrid.Reports" or "System.CommandLine" or "Spectre.Console");
        var users = all.Where(a => a.Value.Contains("BuPO.Hybrid.Bench")).Select(a => a.Key).ToArray();
        Assert.Equal(["bupo-hybrid"], users);
    }

    [Fact]
    public void TheManagedTokenizerReferencesOnlyGgufCoreAndMicrosoftMlTokenizers()
    {
        // The GGUF reader and Core below it, and Microsoft.ML.Tokenizers (its Tokenizer is the public tokenizer's base).
        var tokenizers = OurAssemblies().Single(a => a.Assembly == "BuPO.Hybrid.Tokenizers");
        var beyondTheRuntime = tokenizers.References.Where(r => !r.StartsWith("System", StringComparison.Ordinal) && r is not ("netstandard" or "mscorlib"))
            .Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(["BuPO.Hybrid.Core", "BuPO.Hybrid.Gguf", "Microsoft.ML.Tokenizers"], beyondTheRuntime);
    }

    [Fact]
    public void RolloutsHaveOneLayerBetweenLlamaCppAndItsUsers()
    {
        var all = OurAssemblies().ToDictionary(a => a.Assembly, a => a.References);
        var rollout = all["BuPO.Hybrid.Rollout"];
        Assert.Contains("BuPO.Hybrid.Llama", rollout);
        // Below the trainer and the analysis: no torch, no RL.
        Assert.DoesNotContain(rollout, r => r is "BuPO.Hybrid.RL" or "BuPO.Hybrid.Model" or "BuPO.Hybrid.Analysis" or "TorchSharp");
        // train/eval (RL), analyze's generation (Analysis), generate and bench (the CLI) all sample through it.
        foreach (var user in new[] { "BuPO.Hybrid.RL", "BuPO.Hybrid.Analysis", "bupo-hybrid" })
            Assert.Contains("BuPO.Hybrid.Rollout", all[user]);
    }

    [Fact]
    public void OnlyTheReportsProjectPlots()
    {
        var users = OurAssemblies().Where(a => a.References.Any(r => r.StartsWith("ScottPlot", StringComparison.Ordinal))).Select(a => a.Assembly).Order().ToArray();
        // The demo's comparison plots (entropy per block, the seed study's bands) are Reports' ComparisonPlots.
        Assert.Equal(["BuPO.Hybrid.Reports"], users);
    }

    [Fact]
    public void TheBuildCopiesOnlyTheHostsLlamaRuntimes()
    {
        var runtimes = Path.Combine(AppContext.BaseDirectory, "runtimes");
        var llamaFolders = Directory.GetDirectories(runtimes)
            .Where(d => Directory.EnumerateFiles(d, "*llama*", SearchOption.AllDirectories).Any())
            .Select(Path.GetFileName).ToArray();
        Assert.Single(llamaFolders);
        if (OperatingSystem.IsLinux() && System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture == System.Runtime.InteropServices.Architecture.X64)
            Assert.Equal("linux-x64", llamaFolders[0]);
    }
}
