using System.Globalization;
using System.Text.Json;

namespace BuPO.Hybrid.RL.Training;

/// <summary>
/// One setting of <see cref="TrainOptions"/>, declared once in <see cref="TrainSettings.All"/>: its name (the config key,
/// and the CLI option without dashes), help text, and how its value is read from and written to the config JSON and
/// set on the record. <see cref="TrainSetting{T}"/> holds the typed parts; <see cref="Accept"/> hands them to code that
/// needs the type (the CLI makes an <c>Option&lt;T&gt;</c> from each).
/// </summary>
public abstract class TrainSetting
{
    private protected TrainSetting(string name, string description)
    {
        Name = name;
        Description = description;
    }

    /// <summary>The config key and CLI option name without dashes, kebab-case (<c>lr</c>, <c>bupo-layer</c>).</summary>
    public string Name { get; }

    /// <summary>The help text.</summary>
    public string Description { get; }

    /// <summary>The default as help shows it (invariant culture); null when there is none to show (unset, empty).</summary>
    public abstract string? DefaultText { get; }

    /// <summary>
    /// <paramref name="options"/> with this setting read from a config-file value; a value of the wrong type is a one-line
    /// <see cref="BupoException"/> naming <paramref name="where"/> (the file) and the key.
    /// </summary>
    public abstract TrainOptions ReadJson(TrainOptions options, JsonElement value, string where);

    /// <summary>Writes this setting's value in <paramref name="options"/> (the config-file format, canonical spelling).</summary>
    public abstract void WriteJson(Utf8JsonWriter writer, TrainOptions options);

    /// <summary>Calls <paramref name="visitor"/> with the typed setting.</summary>
    public abstract TResult Accept<TResult>(ITrainSettingVisitor<TResult> visitor);
}

/// <summary>Code that handles a <see cref="TrainSetting"/> by its value type.</summary>
public interface ITrainSettingVisitor<out TResult>
{
    /// <summary>Handles <paramref name="setting"/>.</summary>
    TResult Visit<T>(TrainSetting<T> setting);
}

/// <summary>Parses a setting's text; false when the text is not a value of the setting.</summary>
public delegate bool TryParseSetting<T>(string text, out T value);

/// <summary>A typed <see cref="TrainSetting"/>: getter and setter of its <see cref="TrainOptions"/> property, and its JSON form.</summary>
public sealed class TrainSetting<T> : TrainSetting
{
    private static readonly TrainOptions Defaults = new();
    private readonly Func<JsonElement, T> _read;
    private readonly Action<Utf8JsonWriter, T> _write;

    internal TrainSetting(string name, string description, Func<TrainOptions, T> get, Func<TrainOptions, T, TrainOptions> set,
        Func<JsonElement, T> read, Action<Utf8JsonWriter, T> write, Func<T, string?> format, SettingChoices<T>? choices = null)
        : base(name, description)
    {
        Get = get;
        Set = set;
        _read = read;
        _write = write;
        Format = format;
        Choices = choices;
    }

    /// <summary>The value in a record.</summary>
    public Func<TrainOptions, T> Get { get; }

    /// <summary>A copy of a record with the value set.</summary>
    public Func<TrainOptions, T, TrainOptions> Set { get; }

    /// <summary>The value as help and messages show it (invariant culture; choices by their canonical name); null for none.</summary>
    public Func<T, string?> Format { get; }

    /// <summary>The named values of a choice (an enum setting); null for other settings, whose text the CLI parses by type.</summary>
    public SettingChoices<T>? Choices { get; }

    /// <summary>The value of <c>new TrainOptions()</c>.</summary>
    public T Default => Get(Defaults);

    /// <inheritdoc/>
    public override string? DefaultText => Format(Default);

    /// <inheritdoc/>
    public override TrainOptions ReadJson(TrainOptions options, JsonElement value, string where)
    {
        ArgumentNullException.ThrowIfNull(options);
        T v;
        try { v = _read(value); }
        catch (FormatException e) { throw new BupoException($"{where}: '{Name}': {e.Message}, got {value.GetRawText()}"); }
        return Set(options, v);
    }

    /// <inheritdoc/>
    public override void WriteJson(Utf8JsonWriter writer, TrainOptions options)
    {
        ArgumentNullException.ThrowIfNull(writer);
        ArgumentNullException.ThrowIfNull(options);
        _write(writer, Get(options));
    }

    /// <inheritdoc/>
    public override TResult Accept<TResult>(ITrainSettingVisitor<TResult> visitor)
    {
        ArgumentNullException.ThrowIfNull(visitor);
        return visitor.Visit(this);
    }
}

/// <summary>The values of a choice setting: their canonical names (what is written and shown) and the parse of a name or alias.</summary>
public sealed class SettingChoices<T>(IReadOnlyList<string> names, TryParseSetting<T> tryParse, Func<T, string> name)
{
    /// <summary>The canonical names, in the order help lists them.</summary>
    public IReadOnlyList<string> Names { get; } = names;

    /// <summary>The canonical name of a value.</summary>
    public Func<T, string> Name { get; } = name;

    /// <summary>Parses a name or alias (case-insensitive).</summary>
    public bool TryParse(string text, out T value) => tryParse(text, out value);

    /// <summary>The names as a message lists them: "a, b or c".</summary>
    public string Expected => Names.Count == 1 ? Names[0] : string.Join(", ", Names.Take(Names.Count - 1)) + " or " + Names[^1];
}

/// <summary>The JSON forms of the setting types (readers throw <see cref="FormatException"/> saying what was expected).</summary>
internal static class SettingJson
{
    public static int Int(JsonElement v) =>
        v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var i) ? i : throw new FormatException(v.ValueKind == JsonValueKind.Null ? "cannot be null" : "expected an integer");

    public static int? NullableInt(JsonElement v) => v.ValueKind == JsonValueKind.Null ? null : Int(v);

    public static long Long(JsonElement v) =>
        v.ValueKind == JsonValueKind.Number && v.TryGetInt64(out var l) ? l : throw new FormatException(v.ValueKind == JsonValueKind.Null ? "cannot be null" : "expected an integer");

    public static double Double(JsonElement v) =>
        v.ValueKind == JsonValueKind.Number ? v.GetDouble() : throw new FormatException(v.ValueKind == JsonValueKind.Null ? "cannot be null" : "expected a number");

    public static bool Bool(JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        JsonValueKind.Null => throw new FormatException("cannot be null"),
        _ => throw new FormatException("expected true or false"),
    };

    /// <summary>A string; a number is taken as its text (e.g. <c>"bupo-layer": 5</c>).</summary>
    public static string? NullableText(JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.Null => null,
        JsonValueKind.String => v.GetString(),
        JsonValueKind.Number => v.GetRawText(),
        _ => throw new FormatException("expected a string"),
    };

    public static string Text(JsonElement v) => NullableText(v) ?? throw new FormatException("cannot be null");

    /// <summary>A list of strings; one string is a list of one.</summary>
    public static string[] Texts(JsonElement v)
    {
        if (v.ValueKind == JsonValueKind.String) return [v.GetString()!];
        if (v.ValueKind == JsonValueKind.Array && v.EnumerateArray().All(e => e.ValueKind == JsonValueKind.String))
            return v.EnumerateArray().Select(e => e.GetString()!).ToArray();
        throw new FormatException(v.ValueKind == JsonValueKind.Null ? "cannot be null" : "expected a list of strings");
    }

    public static T Choice<T>(JsonElement v, SettingChoices<T> choices) =>
        v.ValueKind == JsonValueKind.String && choices.TryParse(v.GetString()!, out var value)
            ? value
            : throw new FormatException(v.ValueKind == JsonValueKind.Null ? "cannot be null" : $"expected {choices.Expected}");

    public static void Write(Utf8JsonWriter w, int? v)
    {
        if (v is { } i) w.WriteNumberValue(i);
        else w.WriteNullValue();
    }

    public static void Write(Utf8JsonWriter w, string? v)
    {
        if (v is null) w.WriteNullValue();
        else w.WriteStringValue(v);
    }

    public static void Write(Utf8JsonWriter w, string[] v)
    {
        w.WriteStartArray();
        foreach (var s in v) w.WriteStringValue(s);
        w.WriteEndArray();
    }

    public static string Invariant(IFormattable v) => v.ToString(null, CultureInfo.InvariantCulture);
}
