using TorchSharp;

namespace BuPO.Hybrid.Model;

/// <summary>
/// Scalars that live as long as the process. TorchSharp 0.107 turns a plain number into a <see cref="Scalar"/> for every
/// tensor add and power (even <c>a + b</c> passes an implicit alpha = 1) and leaves that object to the GC; its
/// finalizer can free the native value while libtorch still reads it (seen as "Scalar.h" assertions in long runs,
/// dotnet/TorchSharp#1434). The hot paths pass these rooted ones explicitly instead.
/// </summary>
public static class ScalarConstants
{
    /// <summary>0.</summary>
    public static readonly Scalar Zero = 0.ToScalar();
    /// <summary>1 (the alpha of a plain add).</summary>
    public static readonly Scalar One = 1.ToScalar();
    /// <summary>2 (the exponent of a square).</summary>
    public static readonly Scalar Two = 2.ToScalar();
}
