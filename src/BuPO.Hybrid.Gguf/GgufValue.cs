namespace BuPO.Hybrid.Gguf;

/// <summary>GGUF metadata value types (gguf.h).</summary>
public enum GgufValueType : uint
{
    UInt8 = 0, Int8 = 1, UInt16 = 2, Int16 = 3, UInt32 = 4, Int32 = 5, Float32 = 6, Bool = 7,
    String = 8, Array = 9, UInt64 = 10, Int64 = 11, Float64 = 12,
}

/// <summary>
/// One metadata value. Scalars are held as their .NET type (byte, sbyte, ushort, short, uint, int, float,
/// bool, string, ulong, long, double); arrays as a <see cref="GgufArray"/>.
/// </summary>
public sealed record GgufValue(GgufValueType Type, object Value)
{
    public string AsString() => Value as string ?? throw new InvalidCastException($"GGUF value is {Type}, not a string");
    public GgufArray AsArray() => Value as GgufArray ?? throw new InvalidCastException($"GGUF value is {Type}, not an array");

    /// <summary>Any integer type as a long.</summary>
    public long AsInt64() => Value switch
    {
        byte v => v, sbyte v => v, ushort v => v, short v => v, uint v => v, int v => v, ulong v => checked((long)v), long v => v,
        bool v => v ? 1 : 0,
        _ => throw new InvalidCastException($"GGUF value is {Type}, not an integer"),
    };

    /// <summary>Any numeric type as a double.</summary>
    public double AsDouble() => Value switch { float v => v, double v => v, _ => AsInt64() };

    public bool AsBool() => Value is bool b ? b : AsInt64() != 0;

    public override string ToString() => Value is GgufArray a ? a.ToString() : Value is string s ? s : Convert.ToString(Value, System.Globalization.CultureInfo.InvariantCulture) ?? "";
}

/// <summary>
/// A metadata array: <see cref="Items"/> is a typed .NET array (string[], int[], float[], ...) for scalar
/// element types, or GgufArray[] for nested arrays.
/// </summary>
public sealed record GgufArray(GgufValueType ElementType, Array Items)
{
    public int Count => Items.Length;
    public override string ToString() => $"[{ElementType} x {Items.Length}]";
}
