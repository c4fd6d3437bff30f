using System.Collections.Immutable;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Diagnostics;
using Microsoft.CodeAnalysis.Operations;

namespace BuPO.Hybrid.Analyzers;

/// <summary>
/// Finds TorchSharp <c>Scalar</c>s that only the GC finalizer frees. TorchSharp 0.107 passes a Scalar's native handle to
/// libtorch and keeps no reference to the managed object during the call, so a temporary Scalar (an implicit
/// <c>double</c> → Scalar conversion, or the <c>alpha = 1</c> that <c>Tensor.add(x)</c> and <c>a + b</c> create inside
/// TorchSharp) can be finalized, and its native value freed, while libtorch reads it. Training runs died of it at random
/// steps ("Expected false to be true ... Scalar.h: toFloat" in <c>add_scalar</c>). Pass a held Scalar instead: a static
/// <c>ScalarConstants</c> value, or <c>using var s = x.ToScalar();</c> kept alive past the call.
/// </summary>
[DiagnosticAnalyzer(LanguageNames.CSharp)]
public sealed class TorchScalarLifetimeAnalyzer : DiagnosticAnalyzer
{
    private const string Category = "Reliability";
    private const string Fix = "pass a held Scalar (ScalarConstants, or `using var s = x.ToScalar();`)";

    /// <summary>An implicit conversion to Scalar: a temporary left to the finalizer.</summary>
    public static readonly DiagnosticDescriptor ImplicitScalar = new(
        "BUPO001", "Implicit conversion to a TorchSharp Scalar",
        "Implicit conversion of {0} to TorchSharp.Scalar: the temporary can be finalized while libtorch reads it; " + Fix,
        Category, DiagnosticSeverity.Error, isEnabledByDefault: true);

    /// <summary>A TorchSharp member that makes a temporary Scalar inside (the alpha of add, a number operand).</summary>
    public static readonly DiagnosticDescriptor HiddenScalar = new(
        "BUPO002", "TorchSharp call that makes a temporary Scalar inside",
        "{0} makes a temporary TorchSharp.Scalar inside ({1}), which can be finalized while libtorch reads it; {2}",
        Category, DiagnosticSeverity.Error, isEnabledByDefault: true);

    /// <summary>A Scalar made by ToScalar() and not held by a using declaration or a static field.</summary>
    public static readonly DiagnosticDescriptor UnheldScalar = new(
        "BUPO003", "TorchSharp Scalar not held",
        "The Scalar from {0} is neither disposed by `using` nor kept in a static field: it can be finalized while libtorch reads it; " + Fix,
        Category, DiagnosticSeverity.Error, isEnabledByDefault: true);

    public override ImmutableArray<DiagnosticDescriptor> SupportedDiagnostics => ImmutableArray.Create(ImplicitScalar, HiddenScalar, UnheldScalar);

    public override void Initialize(AnalysisContext context)
    {
        context.ConfigureGeneratedCodeAnalysis(GeneratedCodeAnalysisFlags.None);
        context.EnableConcurrentExecution();
        context.RegisterCompilationStartAction(start =>
        {
            var scalar = start.Compilation.GetTypeByMetadataName("TorchSharp.Scalar");
            var tensor = start.Compilation.GetTypeByMetadataName("TorchSharp.torch+Tensor");
            if (scalar is null || tensor is null) return; // the project does not use TorchSharp
            var types = new TorchTypes(scalar, tensor);
            start.RegisterOperationAction(c => AnalyzeConversion(c, types), OperationKind.Conversion);
            start.RegisterOperationAction(c => AnalyzeOperator(c, types, ((IBinaryOperation)c.Operation).OperatorMethod), OperationKind.Binary);
            start.RegisterOperationAction(c => AnalyzeOperator(c, types, ((ICompoundAssignmentOperation)c.Operation).OperatorMethod), OperationKind.CompoundAssignment);
            start.RegisterOperationAction(c => AnalyzeInvocation(c, types), OperationKind.Invocation);
        });
    }

    private sealed class TorchTypes(INamedTypeSymbol scalar, INamedTypeSymbol tensor)
    {
        public INamedTypeSymbol Scalar { get; } = scalar;
        public INamedTypeSymbol Tensor { get; } = tensor;
        public bool IsScalar(ITypeSymbol? t) => SymbolEqualityComparer.Default.Equals(t, Scalar);
        public bool IsTensor(ITypeSymbol? t) => SymbolEqualityComparer.Default.Equals(t, Tensor);
    }

    private static void AnalyzeConversion(OperationAnalysisContext c, TorchTypes t)
    {
        var conv = (IConversionOperation)c.Operation;
        if (!conv.IsImplicit || conv.OperatorMethod is null || !t.IsScalar(conv.Type)) return;
        c.ReportDiagnostic(Diagnostic.Create(ImplicitScalar, conv.Syntax.GetLocation(), conv.Operand.Type?.ToDisplayString() ?? "a value"));
    }

    private static void AnalyzeOperator(OperationAnalysisContext c, TorchTypes t, IMethodSymbol? op)
    {
        if (op is null || !t.IsTensor(op.ContainingType)) return;
        string? why = null;
        if (op.Name == WellKnownMemberNames.AdditionOperatorName) why = "every Tensor + calls add(x) with alpha 1";
        else if (op.Name == WellKnownMemberNames.SubtractionOperatorName && op.Parameters.Length == 2 && t.IsScalar(op.Parameters[0].Type))
            why = "Scalar - Tensor is negative().add(scalar) with alpha 1";
        else
        {
            foreach (var p in op.Parameters)
                if (IsNumber(p.Type)) { why = $"its {p.Type.ToDisplayString()} operand is converted to a Scalar"; break; }
        }
        if (why is null) return;
        var suggestion = op.Name == WellKnownMemberNames.AdditionOperatorName
            ? "call add(x, ScalarConstants.One) (or another held alpha)"
            : Fix;
        c.ReportDiagnostic(Diagnostic.Create(HiddenScalar, c.Operation.Syntax.GetLocation(), $"Tensor operator {OperatorText(op.Name)}", why, suggestion));
    }

    private static void AnalyzeInvocation(OperationAnalysisContext c, TorchTypes t)
    {
        var inv = (IInvocationOperation)c.Operation;
        var m = inv.TargetMethod;
        var ns = m.ContainingNamespace?.ToDisplayString();
        if (ns is null || !(ns == "TorchSharp" || ns.StartsWith("TorchSharp.", System.StringComparison.Ordinal))) return;

        if (t.IsTensor(m.ContainingType))
        {
            string? why = null;
            if (m.Name is "add" or "add_" && m.Parameters.Length == 1) why = $"{m.Name}(x) is {m.Name}(x, 1)";
            else if (m.Name is "addcdiv" or "addcdiv_" && m.Parameters.Length == 2) why = $"{m.Name}(a, b) is {m.Name}(a, b, 1)";
            if (why != null)
            {
                c.ReportDiagnostic(Diagnostic.Create(HiddenScalar, inv.Syntax.GetLocation(), $"Tensor.{m.Name}", why, $"call {m.Name}(..., ScalarConstants.One)"));
                return;
            }
        }
        // TorchSharp's optimizers (torch.optim.AdamW, SGD, ...) convert doubles to Scalars for every parameter in every step.
        if (m.ContainingType?.ToDisplayString() == "TorchSharp.torch.optim" && m.IsStatic)
        {
            c.ReportDiagnostic(Diagnostic.Create(HiddenScalar, inv.Syntax.GetLocation(), $"torch.optim.{m.Name}", "its step converts the hyper-parameters to Scalars for every parameter",
                "use BuPO.Hybrid.RL.Algorithms.AdamW"));
            return;
        }
        // Tensor.ToDouble(), ToSingle(), ... (TensorExtensionMethods) read the value through a temporary Scalar.
        if (m.ContainingType?.Name == "TensorExtensionMethods" && m.IsExtensionMethod && m.Parameters.Length == 1 && t.IsTensor(m.Parameters[0].Type)
            && m.Name.StartsWith("To", System.StringComparison.Ordinal) && m.Name != "ToScalar" && !t.IsTensor(m.ReturnType) && IsValueResult(m.ReturnType))
        {
            c.ReportDiagnostic(Diagnostic.Create(HiddenScalar, inv.Syntax.GetLocation(), $"Tensor.{m.Name}()", "it reads the value through tensor.ToScalar()",
                "read it with item<T>() (or use `using var s = tensor.ToScalar();` and convert s)"));
            return;
        }
        if (t.IsScalar(m.ReturnType) && !IsHeld(inv))
            c.ReportDiagnostic(Diagnostic.Create(UnheldScalar, inv.Syntax.GetLocation(), m.Name + "()"));
    }

    /// <summary>Whether the Scalar an invocation returns is the value of a using declaration/statement or of a static field.</summary>
    private static bool IsHeld(IOperation op)
    {
        var parent = op.Parent;
        while (parent is IConversionOperation or IParenthesizedOperation) parent = parent.Parent;
        switch (parent)
        {
            case IVariableInitializerOperation { Parent: IVariableDeclaratorOperation { Parent: IVariableDeclarationOperation decl } }:
                // `using var s = x.ToScalar();` and `using (var s = ...)`
                for (var p = decl.Parent; p != null; p = p.Parent)
                {
                    if (p is IUsingDeclarationOperation or IUsingOperation) return true;
                    if (p is not IVariableDeclarationGroupOperation) break;
                }
                return false;
            case IFieldInitializerOperation field:
                foreach (var f in field.InitializedFields) if (!f.IsStatic) return false;
                return true;
            default:
                return false;
        }
    }

    private static bool IsValueResult(ITypeSymbol t) => t.IsValueType;

    private static bool IsNumber(ITypeSymbol t) => t.SpecialType is SpecialType.System_Byte or SpecialType.System_SByte or SpecialType.System_Int16
        or SpecialType.System_UInt16 or SpecialType.System_Int32 or SpecialType.System_UInt32 or SpecialType.System_Int64 or SpecialType.System_UInt64
        or SpecialType.System_Single or SpecialType.System_Double or SpecialType.System_Boolean;

    private static string OperatorText(string name) => name switch
    {
        WellKnownMemberNames.AdditionOperatorName => "+",
        WellKnownMemberNames.SubtractionOperatorName => "-",
        WellKnownMemberNames.MultiplyOperatorName => "*",
        WellKnownMemberNames.DivisionOperatorName => "/",
        WellKnownMemberNames.ModulusOperatorName => "%",
        _ => name,
    };
}
