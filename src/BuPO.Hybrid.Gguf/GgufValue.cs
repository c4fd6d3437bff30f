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
    public static GgufValue Of(byte v) => new(GgufValueType.UInt8, v);
    public static GgufValue Of(sbyte v) => new(GgufValueType.Int8, v);
    public static GgufValue Of(ushort v) => new(GgufValueType.UInt16, v);
    public static GgufValue Of(short v) => new(GgufValueType.Int16, v);
    public static GgufValue Of(uint v) => new(GgufValueType.UInt32, v);
    public static GgufValue Of(int v) => new(GgufValueType.Int32, v);
    public static GgufValue Of(float v) => new(GgufValueType.Float32, v);
    public static GgufValue Of(bool v) => new(GgufValueType.Bool, v);
    public static GgufValue Of(string v) => new(GgufValueType.String, v ?? throw new ArgumentNullException(nameof(v)));
    public static GgufValue Of(ulong v) => new(GgufValueType.UInt64, v);
    public static GgufValue Of(long v) => new(GgufValueType.Int64, v);
    public static GgufValue Of(double v) => new(GgufValueType.Float64, v);
    public static GgufValue Of(GgufArray v) => new(GgufValueType.Array, v ?? throw new ArgumentNullException(nameof(v)));

    /// <summary>An array value from a typed .NET array (string[], uint[], float[], GgufArray[], ...).</summary>
    public static GgufValue OfArray(Array items) => Of(GgufArray.From(items));

    public string AsString() => Value as string ?? throw new InvalidCastException($"GGUF value is {Type}, not a string");
    public GgufArray AsArray() => Value as GgufArray ?? throw new InvalidCastException($"GGUF value is {Type}, not an array");

    /// <summary>Any integer type (or a bool, as 0 or 1) as a long.</summary>
    /// <exception cref="OverflowException">A uint64 above <see cref="long.MaxValue"/>.</exception>
    /// <exception cref="InvalidCastException">Not an integer.</exception>
    public long AsInt64() => AsInt64OrNull() ?? Value switch
    {
        bool v => v ? 1 : 0,
        ulong v => checked((long)v),
        _ => throw new InvalidCastException($"GGUF value is {Type}, not an integer"),
    };

    /// <summary>Any integer type as a long; null for other types (bools included) and for a uint64 above <see cref="long.MaxValue"/>.</summary>
    public long? AsInt64OrNull() => Value switch
    {
        byte v => v,
        sbyte v => v,
        ushort v => v,
        short v => v,
        uint v => v,
        int v => v,
        long v => v,
        ulong v when v <= long.MaxValue => (long)v,
        _ => null,
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

    /// <summary>The value type a .NET type maps to (byte -> UInt8, string -> String, GgufArray -> Array, ...), or null.</summary>
    public static GgufValueType? ValueTypeOf(Type t) =>
        t == typeof(byte) ? GgufValueType.UInt8 : t == typeof(sbyte) ? GgufValueType.Int8
        : t == typeof(ushort) ? GgufValueType.UInt16 : t == typeof(short) ? GgufValueType.Int16
        : t == typeof(uint) ? GgufValueType.UInt32 : t == typeof(int) ? GgufValueType.Int32
        : t == typeof(float) ? GgufValueType.Float32 : t == typeof(bool) ? GgufValueType.Bool
        : t == typeof(string) ? GgufValueType.String : t == typeof(ulong) ? GgufValueType.UInt64
        : t == typeof(long) ? GgufValueType.Int64 : t == typeof(double) ? GgufValueType.Float64
        : t == typeof(GgufArray) ? GgufValueType.Array : null;

    /// <summary>An array whose element type follows the .NET array's (string[] -> String, GgufArray[] -> nested arrays, ...).</summary>
    public static GgufArray From(Array items)
    {
        ArgumentNullException.ThrowIfNull(items);
        var et = items.GetType().GetElementType()!;
        return new GgufArray(ValueTypeOf(et) ?? throw new ArgumentException($"{et.Name}[] has no GGUF element type"), items);
    }
    public override string ToString() => $"[{ElementType} x {Items.Length}]";
}
