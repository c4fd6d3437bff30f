using System.Text.Encodings.Web;
using System.Text.Json;

namespace BuPO.Hybrid;

/// <summary>The JSON writer settings our files and outputs use, made once (options are cached per instance by System.Text.Json).</summary>
public static class JsonFormat
{
    /// <summary>Indented, with System.Text.Json's default (HTML-safe) escaping.</summary>
    public static JsonSerializerOptions Indented { get; } = new() { WriteIndented = true };

    /// <summary>Indented, with non-ASCII text and symbols such as '+' and '&lt;' written as they are (for files people read).</summary>
    public static JsonSerializerOptions IndentedUnescaped { get; } = new() { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
}
