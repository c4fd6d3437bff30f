namespace BuPO.Hybrid.Data;

/// <summary>GSM8K's final-answer marker: a solution ends with a line <c>#### 42</c>.</summary>
public static class Gsm8kAnswer
{
    public const string Marker = "####";

    /// <summary>
    /// Finds the last <c>####</c> in <paramref name="text"/> and returns the rest of its line, trimmed
    /// (<paramref name="answer"/>), and the text before the marker, trimmed (<paramref name="before"/>).
    /// False when there is no marker or nothing follows it.
    /// </summary>
    public static bool TryExtract(string text, out string answer, out string before)
    {
        answer = before = "";
        var at = text.LastIndexOf(Marker, StringComparison.Ordinal);
        if (at < 0) return false;
        var start = at + Marker.Length;
        var end = text.IndexOf('\n', start);
        var value = (end < 0 ? text[start..] : text[start..end]).Trim();
        if (value.Length == 0) return false;
        answer = value;
        before = text[..at].Trim();
        return true;
    }
}
