using System.Collections.Immutable;
using BuPO.Hybrid.Analyzers;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.Diagnostics;

namespace BuPO.Hybrid.Analyzers.Tests;

/// <summary>
/// The analyzer on small programs compiled against TorchSharp: each unsafe form is reported with its rule, and the held
/// form of the same computation is not.
/// </summary>
public class TorchScalarLifetimeAnalyzerTests
{
    private static readonly Lazy<ImmutableArray<MetadataReference>> References = new(() =>
    {
        var tpa = ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator);
        return [.. tpa.Where(p => p.EndsWith(".dll", StringComparison.Ordinal)).Select(p => (MetadataReference)MetadataReference.CreateFromFile(p)),
            MetadataReference.CreateFromFile(typeof(TorchSharp.torch).Assembly.Location)];
    });

    /// <summary>The analyzer's diagnostics on <paramref name="body"/>, placed in a method with tensors x, y in scope.</summary>
    private static string[] Analyze(string body, string members = "")
    {
        var source = $$"""
            using System;
            using TorchSharp;
            using static TorchSharp.torch;
            public static class Held { public static readonly Scalar One = 1.ToScalar(); }
            public class C
            {
                {{members}}
                public static void M(Tensor x, Tensor y)
                {
                    {{body}}
                }
            }
            """;
        var compilation = CSharpCompilation.Create("t", [CSharpSyntaxTree.ParseText(source)], References.Value,
            new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary));
        var errors = compilation.GetDiagnostics().Where(d => d.Severity == DiagnosticSeverity.Error).ToList();
        Assert.True(errors.Count == 0, "the test program does not compile: " + string.Join("; ", errors));
        var diagnostics = compilation.WithAnalyzers([new TorchScalarLifetimeAnalyzer()]).GetAnalyzerDiagnosticsAsync().Result;
        return diagnostics.Select(d => d.Id).OrderBy(id => id, StringComparer.Ordinal).ToArray();
    }

    [Fact]
    public void TensorPlusTensor_IsReported_AddWithHeldAlpha_IsNot()
    {
        Assert.Equal(["BUPO002"], Analyze("var z = x + y;"));
        Assert.Equal(["BUPO002"], Analyze("var z = x.add(y);"));
        Assert.Empty(Analyze("var z = x.add(y, Held.One);"));
    }

    [Fact]
    public void InPlaceAddWithoutAlpha_IsReported()
    {
        Assert.Equal(["BUPO002"], Analyze("x.add_(y);"));
        Assert.Empty(Analyze("x.add_(y, Held.One);"));
    }

    [Fact]
    public void NumberOperand_IsReported_HeldScalar_IsNot()
    {
        Assert.Equal(["BUPO002"], Analyze("var z = x * 2.0;"));
        Assert.Equal(["BUPO002"], Analyze("var z = x - 1;"));
        Assert.Equal(["BUPO001"], Analyze("var z = x.mul(2.0);"));
        Assert.Equal(["BUPO001", "BUPO001"], Analyze("var z = x.clamp(-20, 20);"));
        Assert.Empty(Analyze("using var two = 2.0.ToScalar(); var z = x.mul(two);"));
        Assert.Empty(Analyze("var z = x * y - y;")); // tensor * tensor and tensor - tensor make no Scalar
    }

    [Fact]
    public void ScalarNotHeld_IsReported_UsingAndStaticField_AreNot()
    {
        Assert.Equal(["BUPO003"], Analyze("var s = 2.0.ToScalar(); var z = x.mul(s);"));
        Assert.Equal(["BUPO003"], Analyze("var z = x.mul(2.0.ToScalar());"));
        Assert.Empty(Analyze("using (var s = 2.0.ToScalar()) { var z = x.mul(s); }"));
        Assert.Empty(Analyze("var z = x.mul(Two);", "private static readonly Scalar Two = 2.0.ToScalar();"));
        Assert.Equal(["BUPO003"], Analyze("", "private readonly Scalar _two = 2.0.ToScalar();"));
    }

    [Fact]
    public void ReadingAValueThroughToDouble_IsReported_Item_IsNot()
    {
        Assert.Equal(["BUPO002"], Analyze("double v = x.sum().ToDouble();"));
        Assert.Empty(Analyze("double v = x.sum().item<float>();"));
    }

    [Fact]
    public void TorchOptimizer_IsReported()
    {
        Assert.Equal(["BUPO002"], Analyze("using var opt = torch.optim.SGD(new[] { new TorchSharp.Modules.Parameter(x) }, 0.1);"));
    }
}
