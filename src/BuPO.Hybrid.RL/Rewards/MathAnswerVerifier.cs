using System.Globalization;
using System.Numerics;
using System.Text;
using System.Text.RegularExpressions;
using BuPO.Hybrid.Data;
using BuPO.Hybrid.RL.Rewards.Verifier;

namespace BuPO.Hybrid.RL.Rewards;

/// <summary>How <see cref="MathAnswerVerifier"/> compares an answer with the reference.</summary>
public enum VerifierMode
{
    /// <summary>
    /// The string comparison, and, where it says no, the two answers parsed into expression trees and compared
    /// mathematically (relations, equations up to a factor, sets, intervals, matrices, symbolic expressions). Several
    /// boxes of the final answer count together (<see cref="VerifierOptions.GatherFinalBoxes"/>).
    /// </summary>
    Symbolic,

    /// <summary>The original grader: the last <c>\boxed{}</c> only, normalized strings and rationals.</summary>
    Strict,
}

/// <summary>Options of <see cref="MathAnswerVerifier"/>. The defaults are BuPO's: only a <c>\boxed{}</c> answer counts.</summary>
public sealed record VerifierOptions
{
    /// <summary>How answers are compared; <see cref="VerifierMode.Symbolic"/> by default.</summary>
    public VerifierMode Mode { get; init; } = VerifierMode.Symbolic;

    /// <summary>
    /// Symbolic mode: the final answer is every box at the end joined only by "and", commas, <c>\quad</c> and the like
    /// (<c>\boxed{-2} \text{ and } \boxed{1}</c> is the list -2, 1), in the response and in a boxed reference; otherwise the last box.
    /// </summary>
    public bool GatherFinalBoxes { get; init; } = true;

    /// <summary>
    /// Symbolic mode: when the response has no box (nor an accepted <c>####</c> line), take what follows its last
    /// "final answer ... is", else its last math span (<c>$..$</c>, <c>\(..\)</c> within one line; <c>$$..$$</c>,
    /// <c>\[..\]</c>) or number.
    /// </summary>
    public bool FallbackToFinalAnswer { get; init; }

    /// <summary>When the response has no box, take GSM8K's <c>#### 42</c> line.</summary>
    public bool AcceptGsm8kMarker { get; init; }

    /// <summary>
    /// When the response has no box (nor an accepted <c>####</c> line or final answer), take the last number in it (in
    /// symbolic mode, not one glued to a word: "AZYUK2A" has none).
    /// </summary>
    public bool FallbackToLastNumber { get; init; }

    /// <summary>Relative tolerance of the numeric comparison of non-integers (integers compare exactly).</summary>
    public double RelativeTolerance { get; init; } = 1e-6;
}

/// <summary>Where the verifier found the response's final answer.</summary>
public enum AnswerSource { None, Boxed, Gsm8kMarker, LastNumber, FinalAnswer }

/// <summary>The verdict on one response.</summary>
/// <param name="Extracted">The final answer as written in the response, or null when it has none.</param>
/// <param name="Normalized">That answer normalized, or null.</param>
/// <param name="NormalizedReference">The reference answer normalized, or null when there is none.</param>
/// <param name="Correct">Whether the answer is equivalent to the reference.</param>
/// <param name="Source">Where the answer was found.</param>
public sealed record VerificationResult(string? Extracted, string? Normalized, string? NormalizedReference, bool Correct, AnswerSource Source)
{
    /// <summary>BuPO's reward: 1 when correct, else 0.</summary>
    public double Reward => Correct ? 1.0 : 0.0;
}

/// <summary>
/// Checks a response's final answer against a reference: extracts the last <c>\boxed{...}</c> (or <c>\fbox{}</c>,
/// <c>\boxed 5</c>; optionally GSM8K's <c>####</c> line or the last number), normalizes both sides (LaTeX fractions,
/// units, degrees, percent, thousands separators, <c>x = 5</c>, ...) and compares them exactly as rationals, numerically
/// within a relative tolerance, element-wise as tuples/intervals/lists, or as normalized strings. In
/// <see cref="VerifierMode.Symbolic"/> (the default), when those say no, both answers are also parsed into expression
/// trees and compared mathematically (see <c>Verifier/MathEquivalence.cs</c>), and the boxes of the final answer count
/// together; <see cref="VerifierMode.Strict"/> is the string comparison alone. Never throws on any input.
/// </summary>
public sealed partial class MathAnswerVerifier
{
    private readonly VerifierOptions _options;

    public MathAnswerVerifier(VerifierOptions? options = null) => _options = options ?? new VerifierOptions();

    public VerifierOptions Options => _options;

    /// <summary>Extracts the final answer of <paramref name="response"/> and compares it with <paramref name="reference"/>.</summary>
    public VerificationResult Verify(string response, string? reference)
    {
        if (_options.Mode == VerifierMode.Symbolic) return VerifySymbolic(response, reference);
        string? normalizedReference = null;
        if (reference != null)
            normalizedReference = Normalize(reference.Contains("\\boxed") || reference.Contains("\\fbox") ? ExtractBoxed(reference) ?? reference : reference);
        var (extracted, source) = ExtractAnswer(response);
        if (extracted == null) return new VerificationResult(null, null, normalizedReference, false, AnswerSource.None);
        var normalized = Normalize(extracted);
        var correct = normalizedReference != null && EquivalentNormalized(normalized, normalizedReference);
        return new VerificationResult(extracted, normalized, normalizedReference, correct, source);
    }

    /// <summary>The final answer of <paramref name="response"/> under this verifier's options, and where it came from.</summary>
    public (string? Answer, AnswerSource Source) ExtractAnswer(string response)
    {
        if (_options.Mode == VerifierMode.Symbolic) return ExtractAnswerSymbolic(response);
        if (HasBox(response) && ExtractBoxed(response) is { } boxed) return (boxed, AnswerSource.Boxed);
        if (_options.AcceptGsm8kMarker && Gsm8kAnswer.TryExtract(response, out var marked, out _)) return (marked, AnswerSource.Gsm8kMarker);
        if (_options.FallbackToLastNumber && ExtractLastNumber(response) is { } number) return (number, AnswerSource.LastNumber);
        return (null, AnswerSource.None);
    }

    /// <summary>Whether two answers (as written, unboxed) are equivalent.</summary>
    public bool AreEquivalent(string answer, string reference) =>
        _options.Mode == VerifierMode.Symbolic ? EquivalentSymbolic(answer, reference) : EquivalentNormalized(Normalize(answer), Normalize(reference));

    private static bool HasBox(string text) => text.Contains("\\boxed", StringComparison.Ordinal) || text.Contains("\\fbox", StringComparison.Ordinal);

    // ---------------------------------------------------------------- extraction

    /// <summary>
    /// The content of the last <c>\boxed{...}</c> or <c>\fbox{...}</c> (nested braces kept; <c>\{</c> and <c>\}</c> are not
    /// counted), or the token after <c>\boxed </c>. Null when there is none or the last one is unbalanced or empty-headed.
    /// </summary>
    public static string? ExtractBoxed(string text)
    {
        var boxed = text.LastIndexOf("\\boxed", StringComparison.Ordinal);
        var fbox = text.LastIndexOf("\\fbox", StringComparison.Ordinal);
        int at, i;
        if (boxed >= fbox) { at = boxed; i = boxed + "\\boxed".Length; }
        else { at = fbox; i = fbox + "\\fbox".Length; }
        if (at < 0) return null;
        return ReadBox(text, i, out _);
    }

    /// <summary>The content of the box whose command name ends at <paramref name="i"/>, and the index after it; null as in <see cref="ExtractBoxed"/>.</summary>
    private static string? ReadBox(string text, int i, out int end)
    {
        end = i;
        var j = i;
        while (j < text.Length && char.IsWhiteSpace(text[j])) j++;
        if (j < text.Length && text[j] == '{')
        {
            var depth = 0;
            for (var k = j; k < text.Length; k++)
            {
                var c = text[k];
                if (c == '\\' && k + 1 < text.Length && text[k + 1] is '{' or '}') { k++; continue; }
                if (c == '{') depth++;
                else if (c == '}' && --depth == 0) { end = k + 1; return text[(j + 1)..k]; }
            }
            return null; // unbalanced
        }
        if (j == i) return null; // "\boxedfoo": not a box
        end = j;
        while (end < text.Length && !char.IsWhiteSpace(text[end]) && text[end] != '$') end++;
        var token = text[j..end].TrimEnd('.', ',', ';');
        return token.Length > 0 ? token : null;
    }

    /// <summary>The last number in <paramref name="text"/> (thousands separators, decimals and a/b fractions kept), or null.</summary>
    public static string? ExtractLastNumber(string text)
    {
        Match? last = null;
        foreach (Match m in NumberRegex().Matches(text)) last = m;
        return last?.Value;
    }

    // ---------------------------------------------------------------- normalization

    private static readonly string[] DegreeMarks = ["^{\\circ}", "^\\circ", "^{\\degree}", "\\degree", "\\circ", "°"];

    /// <summary>
    /// Normalizes an answer for comparison: drops <c>$</c>, spacing commands, <c>\left</c>/<c>\right</c>, degrees, percent
    /// signs, trailing units (<c>\text{ cm}</c>, "5 apples"), a leading <c>x =</c>; unwraps <c>\text{}</c>, <c>\mbox{}</c>;
    /// rewrites <c>\dfrac</c>/<c>\tfrac</c>/<c>\frac12</c>/<c>a/b</c> as <c>\frac{a}{b}</c> and <c>\sqrt2</c> as <c>\sqrt{2}</c>;
    /// removes whitespace, thousands separators, a trailing period and safe surrounding parentheses; writes plain numbers
    /// canonically (025 -> 25, 3.50 -> 3.5, .5 -> 0.5).
    /// </summary>
    public static string Normalize(string answer) => Normalize(answer, keepSpacedLists: false);

    /// <summary>
    /// <see cref="Normalize(string)"/>; with <paramref name="keepSpacedLists"/>, "32, 349" stays a list (the original
    /// dropped the space and read a thousands separator) while LaTeX's <c>12,\!000</c> and <c>14{,}916</c> still join.
    /// </summary>
    private static string Normalize(string answer, bool keepSpacedLists)
    {
        var s = answer.Replace('\n', ' ').Replace('\r', ' ').Replace('\t', ' ').Trim();
        if (keepSpacedLists) s = AnswerTextPatterns.CommaThinSpace().Replace(s, ",");
        s = s.Replace("\\$", "").Replace("$", "");
        if (s.StartsWith("\\(", StringComparison.Ordinal) && s.EndsWith("\\)", StringComparison.Ordinal) || s.StartsWith("\\[", StringComparison.Ordinal) && s.EndsWith("\\]", StringComparison.Ordinal)) s = s[2..^2];
        s = SpacingRegex().Replace(s, " ");
        s = LeftRightRegex().Replace(s, "");
        s = s.Replace("dfrac", "frac").Replace("tfrac", "frac");
        foreach (var t in DegreeMarks) s = s.Replace(t, "");
        s = s.Replace("\\%", "").Replace("%", "");
        s = s.Trim();

        // Units: a trailing \text{...} after a value is dropped; other \text{...} are unwrapped.
        for (Match m; (m = TrailingTextUnitRegex().Match(s)).Success;) s = m.Groups[1].Value.TrimEnd();
        for (string prev = ""; prev != s;) { prev = s; s = TextWrapperRegex().Replace(s, "$1"); }
        s = s.Trim();
        if (WordUnitsRegex().Match(s) is { Success: true } wm && !wm.Groups[2].Value.Split(' ').Any(w => w is "and" or "or" or "to"))
            s = wm.Groups[1].Value;
        s = DegreesWordRegex().Replace(s, "");

        // "x = 5" -> "5" (a single variable, optionally subscripted, or a Greek letter, on the left; one "=").
        if (VariableAssignmentRegex().Match(s) is { Success: true } am && !am.Groups[1].Value.Contains('=')) s = am.Groups[1].Value;

        var spacedComma = keepSpacedLists && SpacedCommaRegex().IsMatch(s);
        s = WhitespaceRegex().Replace(s, "");
        s = s.Replace("{,}", ",");
        s = s.TrimEnd('.');
        if (!spacedComma && AnswerTextPatterns.CommaThousands().IsMatch(s)) s = s.Replace(",", "");
        s = FixFracs(s);
        s = FixSqrt(s);
        if (SlashFractionRegex().Match(s) is { Success: true } fm) s = $"{fm.Groups[1].Value}\\frac{{{fm.Groups[2].Value}}}{{{fm.Groups[3].Value}}}";
        s = BareDecimalRegex().Replace(s, "0.$1");
        s = StripSafeWrapping(s);
        if (PlainNumberRegex().IsMatch(s)) s = CanonicalDecimal(s);
        return s;
    }

    /// <summary>Rewrites <c>\frac12</c>, <c>\frac1{b}</c>, <c>\frac{a}2</c> as <c>\frac{..}{..}</c> (arguments: a brace group or one character).</summary>
    private static string FixFracs(string s) => FixCommandArgs(s, "\\frac", 2);

    /// <summary>Rewrites <c>\sqrt2</c> as <c>\sqrt{2}</c>.</summary>
    private static string FixSqrt(string s) => FixCommandArgs(s, "\\sqrt", 1);

    private static string FixCommandArgs(string s, string command, int args)
    {
        if (!s.Contains(command, StringComparison.Ordinal)) return s;
        var sb = new StringBuilder(s.Length + 8);
        var i = 0;
        while (i < s.Length)
        {
            var at = s.IndexOf(command, i, StringComparison.Ordinal);
            if (at < 0) { sb.Append(s, i, s.Length - i); break; }
            sb.Append(s, i, at - i).Append(command);
            i = at + command.Length;
            if (i < s.Length && char.IsAsciiLetter(s[i])) continue; // a longer command name (\fracx is not ours)
            if (command == "\\sqrt" && i < s.Length && s[i] == '[') continue; // \sqrt[3]{x}
            for (var a = 0; a < args && i < s.Length; a++)
            {
                if (s[i] == '{')
                {
                    var close = MatchingBrace(s, i);
                    if (close < 0) break;
                    sb.Append(s, i, close - i + 1);
                    i = close + 1;
                }
                else if (s[i] == '\\') break; // \frac\pi2 and the like: leave as written
                else
                {
                    sb.Append('{').Append(s[i]).Append('}');
                    i++;
                }
            }
        }
        return sb.ToString();
    }

    private static int MatchingBrace(string s, int open)
    {
        var depth = 0;
        for (var k = open; k < s.Length; k++)
        {
            if (s[k] == '\\' && k + 1 < s.Length && s[k + 1] is '{' or '}') { k++; continue; }
            if (s[k] == '{') depth++;
            else if (s[k] == '}' && --depth == 0) return k;
        }
        return -1;
    }

    /// <summary>Strips "{...}" around the whole answer, and "(...)" where the inside is not a tuple (no top-level comma).</summary>
    private static string StripSafeWrapping(string s)
    {
        while (s.Length >= 2)
        {
            if (s[0] == '{' && MatchingBrace(s, 0) == s.Length - 1) { s = s[1..^1]; continue; }
            if (s[0] == '(' && s[^1] == ')' && EnclosesAll(s) && SplitTopLevel(s[1..^1]).Count == 1) { s = s[1..^1]; continue; }
            break;
        }
        return s;
    }

    /// <summary>Whether the bracket opening at 0 closes only at the last character ( "(" "[" open, ")" "]" close).</summary>
    private static bool EnclosesAll(string s)
    {
        var depth = 0;
        for (var k = 0; k < s.Length; k++)
        {
            if (s[k] is '(' or '[' or '{') depth++;
            else if (s[k] is ')' or ']' or '}') depth--;
            if (depth == 0 && k < s.Length - 1) return false;
        }
        return depth == 0;
    }

    private static List<string> SplitTopLevel(string s)
    {
        var parts = new List<string>();
        int depth = 0, start = 0;
        for (var k = 0; k < s.Length; k++)
        {
            if (s[k] == '\\' && k + 1 < s.Length && s[k + 1] is '{' or '}') { k++; continue; }
            if (s[k] is '(' or '[' or '{') depth++;
            else if (s[k] is ')' or ']' or '}') depth--;
            else if (s[k] == ',' && depth == 0) { parts.Add(s[start..k]); start = k + 1; }
        }
        parts.Add(s[start..]);
        return parts;
    }

    private static string CanonicalDecimal(string s)
    {
        var negative = s.StartsWith('-');
        if (negative) s = s[1..];
        var dot = s.IndexOf('.');
        var intPart = (dot < 0 ? s : s[..dot]).TrimStart('0');
        var fracPart = dot < 0 ? "" : s[(dot + 1)..].TrimEnd('0');
        if (intPart.Length == 0) intPart = "0";
        var result = fracPart.Length > 0 ? intPart + "." + fracPart : intPart;
        return negative && result != "0" ? "-" + result : result;
    }

    // ---------------------------------------------------------------- comparison

    private bool EquivalentNormalized(string a, string b)
    {
        if (a.Length == 0 || b.Length == 0) return false;
        if (a == b) return true;
        if (TryParseRational(a, out var ra) && TryParseRational(b, out var rb)) return NumbersMatch(ra, rb);
        if (AnswerTextPatterns.SingleWord().IsMatch(a) && AnswerTextPatterns.SingleWord().IsMatch(b)) return string.Equals(a, b, StringComparison.OrdinalIgnoreCase);

        // Sets \{...\}: unordered.
        if (a.StartsWith("\\{", StringComparison.Ordinal) && a.EndsWith("\\}", StringComparison.Ordinal) && b.StartsWith("\\{", StringComparison.Ordinal) && b.EndsWith("\\}", StringComparison.Ordinal))
            return ListsMatch(SplitTopLevel(a[2..^2]), SplitTopLevel(b[2..^2]), ordered: false);
        // Tuples and intervals: same brackets, element-wise in order.
        if (a.Length >= 2 && b.Length >= 2 && a[0] is '(' or '[' && a[^1] is ')' or ']' && EnclosesAll(a) && EnclosesAll(b))
        {
            if (a[0] != b[0] || a[^1] != b[^1]) return false;
            var pa = SplitTopLevel(a[1..^1]);
            var pb = SplitTopLevel(b[1..^1]);
            return pa.Count > 1 && ListsMatch(pa, pb, ordered: true);
        }
        // Bare lists "1,-2" (all the solutions): any order.
        var la = SplitTopLevel(a);
        var lb = SplitTopLevel(b);
        if (la.Count > 1 && lb.Count > 1) return ListsMatch(la, lb, ordered: false);
        return false;
    }

    private bool ListsMatch(List<string> a, List<string> b, bool ordered)
    {
        if (a.Count != b.Count) return false;
        if (ordered)
        {
            for (var k = 0; k < a.Count; k++)
                if (!EquivalentNormalized(StripSafeWrapping(a[k]), StripSafeWrapping(b[k]))) return false;
            return true;
        }
        var used = new bool[b.Count];
        foreach (var x in a)
        {
            var found = false;
            for (var k = 0; k < b.Count && !found; k++)
                if (!used[k] && EquivalentNormalized(StripSafeWrapping(x), StripSafeWrapping(b[k]))) used[k] = found = true;
            if (!found) return false;
        }
        return true;
    }

    private bool NumbersMatch((BigInteger Num, BigInteger Den) a, (BigInteger Num, BigInteger Den) b)
    {
        if (a.Num * b.Den == b.Num * a.Den) return true;
        if (a.Den.IsOne && b.Den.IsOne) return false; // integers: exact only
        var x = (double)a.Num / (double)a.Den;
        var y = (double)b.Num / (double)b.Den;
        if (!double.IsFinite(x) || !double.IsFinite(y)) return false;
        return Math.Abs(x - y) <= _options.RelativeTolerance * Math.Max(Math.Abs(x), Math.Abs(y));
    }

    /// <summary>Parses a normalized integer, decimal, <c>\frac{a}{b}</c> or <c>a/b</c> (a, b integers or decimals, signs allowed) exactly.</summary>
    public static bool TryParseRational(string normalized, out (BigInteger Num, BigInteger Den) value)
    {
        value = default;
        var s = normalized;
        var negative = false;
        if (s.StartsWith('-')) { negative = true; s = s[1..]; }
        else if (s.StartsWith('+')) s = s[1..];
        if (TryParseDecimal(s, out value)) { }
        else if (FracRegex().Match(s) is { Success: true } m)
        {
            if (!TryParseSignedDecimal(m.Groups["n"].Value, out var n) || !TryParseSignedDecimal(m.Groups["d"].Value, out var d) || d.Num.IsZero) return false;
            value = (n.Num * d.Den, n.Den * d.Num);
        }
        else return false;
        if (negative) value = (-value.Num, value.Den);
        if (value.Den.Sign < 0) value = (-value.Num, -value.Den);
        var g = BigInteger.GreatestCommonDivisor(value.Num, value.Den);
        if (!g.IsZero && !g.IsOne) value = (value.Num / g, value.Den / g);
        return true;
    }

    private static bool TryParseSignedDecimal(string s, out (BigInteger Num, BigInteger Den) value)
    {
        var negative = s.StartsWith('-');
        var ok = TryParseDecimal(negative ? s[1..] : s, out value);
        if (ok && negative) value = (-value.Num, value.Den);
        return ok;
    }

    private static bool TryParseDecimal(string s, out (BigInteger Num, BigInteger Den) value)
    {
        value = default;
        if (s.Length == 0 || s.Length > 400 || !UnsignedDecimalRegex().IsMatch(s)) return false;
        var dot = s.IndexOf('.');
        var digits = dot < 0 ? s : s.Remove(dot, 1);
        var scale = dot < 0 ? 0 : s.Length - dot - 1;
        value = (BigInteger.Parse(digits.Length == 0 ? "0" : digits, CultureInfo.InvariantCulture), BigInteger.Pow(10, scale));
        return true;
    }

    [GeneratedRegex(@"-?\d+(?:,\d{3})*(?:\.\d+)?(?:/\d+)?|-?\.\d+")]
    private static partial Regex NumberRegex();

    /// <summary>Spacing and style commands: <c>\!</c> <c>\,</c> <c>\;</c> <c>\:</c> <c>\&gt;</c> <c>\ </c> (not the row break <c>\\</c>), <c>\quad</c>, <c>~</c>, <c>\displaystyle</c>.</summary>
    [GeneratedRegex(@"(?<!\\)\\[!,;:> ]|\\q?quad(?![a-zA-Z])|\\(?:display|text)style(?![a-zA-Z])|~")]
    private static partial Regex SpacingRegex();

    [GeneratedRegex(@"\\(?:left|right|bigl|bigr|Bigl|Bigr|big|Big)(?![a-zA-Z])")]
    private static partial Regex LeftRightRegex();

    [GeneratedRegex(@"^(.*[\d})\]a-zA-Z])\s*\\(?:text|textrm|mbox|mathrm)\s*\{[^{}]*\}(?:\^\{?\d\}?)?$")]
    private static partial Regex TrailingTextUnitRegex();

    [GeneratedRegex(@"\\(?:text|textrm|textbf|textit|texttt|mbox|mathrm|mathbf|mathit|boldsymbol)\s*\{([^{}]*)\}")]
    private static partial Regex TextWrapperRegex();

    [GeneratedRegex(@"^(-?[\d.,]+(?:/\d+)?)\s+([a-zA-Z]{2,}(?: [a-zA-Z]+)*)$")]
    private static partial Regex WordUnitsRegex();

    [GeneratedRegex(@"(?<=\d)\s*degrees?$")]
    private static partial Regex DegreesWordRegex();

    [GeneratedRegex(@"^(?:[a-zA-Z](?:_\{?[a-zA-Z0-9]+\}?)?|\\[a-zA-Z]+)\s*=\s*(.+)$")]
    private static partial Regex VariableAssignmentRegex();

    [GeneratedRegex(@"\s+")]
    private static partial Regex WhitespaceRegex();

    [GeneratedRegex(@"\d,\s+\d")]
    private static partial Regex SpacedCommaRegex();

    [GeneratedRegex(@"^(-?)(\d+)/(\d+)$")]
    private static partial Regex SlashFractionRegex();

    [GeneratedRegex(@"(?<![\d.])\.(\d)")]
    private static partial Regex BareDecimalRegex();

    [GeneratedRegex(@"^-?\d+(?:\.\d+)?$")]
    private static partial Regex PlainNumberRegex();

    [GeneratedRegex(@"^\d*\.?\d+$|^\d+\.$")]
    private static partial Regex UnsignedDecimalRegex();

    [GeneratedRegex(@"^(?:\\frac\{(?<n>-?[\d.]+)\}\{(?<d>-?[\d.]+)\}|(?<n>-?[\d.]+)/(?<d>-?[\d.]+))$")]
    private static partial Regex FracRegex();
}
