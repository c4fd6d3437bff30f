using System.Text.RegularExpressions;
using BuPO.Hybrid.Data;
using BuPO.Hybrid.RL.Rewards.Verifier;

namespace BuPO.Hybrid.RL.Rewards;

// The symbolic mode (VerifierMode.Symbolic): several final boxes, the "final answer" fallback, and the expression-tree
// comparison behind the string one.
public sealed partial class MathAnswerVerifier
{
    private VerificationResult VerifySymbolic(string response, string? reference)
    {
        string? referenceAnswer = null, normalizedReference = null;
        if (reference != null)
        {
            referenceAnswer = HasBox(reference) ? FinalBoxes(reference) ?? reference : reference;
            normalizedReference = Normalize(referenceAnswer, keepSpacedLists: true);
        }
        var (extracted, source) = ExtractAnswerSymbolic(response);
        if (extracted == null) return new VerificationResult(null, null, normalizedReference, false, AnswerSource.None);
        var normalized = Normalize(extracted, keepSpacedLists: true);
        var correct = referenceAnswer != null && normalizedReference != null
                      && (EquivalentNormalized(normalized, normalizedReference) || EquivalentTrees(extracted, referenceAnswer));
        return new VerificationResult(extracted, normalized, normalizedReference, correct, source);
    }

    private (string? Answer, AnswerSource Source) ExtractAnswerSymbolic(string response)
    {
        if (HasBox(response) && FinalBoxes(response) is { } boxed) return (boxed, AnswerSource.Boxed);
        if (_options.AcceptGsm8kMarker && Gsm8kAnswer.TryExtract(response, out var marked, out _)) return (marked, AnswerSource.Gsm8kMarker);
        if (_options.FallbackToFinalAnswer && ExtractFinalAnswer(response) is { } final) return (final, AnswerSource.FinalAnswer);
        if (_options.FallbackToLastNumber && LastNumber(response) is { } number) return (number, AnswerSource.LastNumber);
        return (null, AnswerSource.None);
    }

    private bool EquivalentSymbolic(string answer, string reference) =>
        EquivalentNormalized(Normalize(answer, keepSpacedLists: true), Normalize(reference, keepSpacedLists: true)) || EquivalentTrees(answer, reference);

    /// <summary>
    /// Whether the symbolic mode's parser reads <paramref name="answer"/> (unboxed, as written) into an expression tree;
    /// answers it cannot read are compared as normalized strings only. <paramref name="isText"/>: it read a word ("Evelyn").
    /// </summary>
    public static bool ParsesAsMath(string answer, out bool isText)
    {
        var node = LatexMathParser.Parse(answer);
        isText = node is TextNode;
        return node != null;
    }

    private bool EquivalentTrees(string answer, string reference)
    {
        var a = LatexMathParser.Parse(answer);
        if (a == null) return false;
        var b = LatexMathParser.Parse(reference);
        if (b == null) return false;
        try
        {
            return new MathEquivalence(_options.RelativeTolerance).Equivalent(a, b);
        }
        catch (Exception e) when (e is ArithmeticException or ArgumentException)
        {
            return false; // the verifier must never throw; exact arithmetic is capped, this is the last guard
        }
    }

    // ---------------------------------------------------------------- boxes

    /// <summary>
    /// The last box (as <see cref="ExtractBoxed"/>), or, with <see cref="VerifierOptions.GatherFinalBoxes"/>, it and the
    /// boxes just before it that only connectors separate, joined with ", ". Null when the last box is incomplete.
    /// </summary>
    private string? FinalBoxes(string text)
    {
        var last = ExtractBoxed(text);
        if (last == null || !_options.GatherFinalBoxes) return last;
        var parts = new List<string> { last };
        var start = LastBoxCommand(text, text.Length).At;
        // Walk back one box at a time and stop at the first that is not joined on: each step reads one box, so an
        // unbalanced box early in a long response costs one scan, not one per box.
        while (LastBoxCommand(text, start) is { At: >= 0 } previous)
        {
            var content = ReadBox(text, previous.At + previous.NameLength, out var end);
            if (content == null || end > start) break; // unbalanced, or the box around the one after it
            if (!IsConnector(text.AsSpan(end, start - end))) break;
            parts.Add(content);
            start = previous.At;
        }
        if (parts.Count == 1) return last;
        parts.Reverse();
        return string.Join(", ", parts);
    }

    /// <summary>The last <c>\boxed</c> or <c>\fbox</c> command starting before <paramref name="before"/> (At -1: none).</summary>
    private static (int At, int NameLength) LastBoxCommand(string text, int before)
    {
        if (before <= 0) return (-1, 0);
        var boxed = text.LastIndexOf("\\boxed", before - 1, StringComparison.Ordinal);
        var fbox = text.LastIndexOf("\\fbox", before - 1, StringComparison.Ordinal);
        return boxed >= fbox ? (boxed, "\\boxed".Length) : (fbox, "\\fbox".Length);
    }

    /// <summary>Whether the text between two boxes only joins them: "and", "or", punctuation, math delimiters, spacing.</summary>
    private static bool IsConnector(ReadOnlySpan<char> between)
    {
        if (between.Length > 80) return false;
        var rest = ConnectorWordsRegex().Replace(between.ToString(), "");
        if (rest.Length > 12) return false;
        foreach (var c in rest)
            if (char.IsLetterOrDigit(c)) return false;
        return true;
    }

    [GeneratedRegex(@"\\text\s*\{\s*(?:and|or)?\s*\}|\\q?quad|\\[,;:! ]|\\\\|\\[()\[\]]|\b(?:and|or)\b")]
    private static partial Regex ConnectorWordsRegex();

    // ---------------------------------------------------------------- unboxed answers

    /// <summary>
    /// The answer of a response without a box: the first math span or number after the last "final answer" (after its
    /// "is" when there is one), else the last math span or number of the text. Null when there is none.
    /// </summary>
    internal static string? ExtractFinalAnswer(string text)
    {
        var at = text.LastIndexOf("final answer", StringComparison.OrdinalIgnoreCase);
        if (at >= 0)
        {
            var tail = text[(at + "final answer".Length)..];
            var isMatch = IsWordRegex().Match(tail);
            var candidate = (isMatch.Success ? Candidates(tail[(isMatch.Index + isMatch.Length)..]).FirstOrDefault() : null)
                            ?? Candidates(tail).FirstOrDefault();
            if (candidate != null) return candidate;
        }
        return Candidates(text).LastOrDefault();
    }

    /// <summary>
    /// The math spans and the numbers outside them, in order. Inline math (<c>$..$</c>, <c>\(..\)</c>) ends on its own
    /// line: an opener whose closer only comes after a line break opens no span and is read as text (so the numbers after
    /// it are read as numbers, and its would-be closer may open the next span), as in Math-Verify's LaTeX extraction;
    /// display math (<c>$$..$$</c>, <c>\[..\]</c>) may span lines. Inline delimiters standing alone at the ends of their
    /// lines (<see cref="BrokenInlineMath"/>) enclose neither a span nor numbers.
    /// </summary>
    private static IEnumerable<string> Candidates(string text)
    {
        // Spans and the numbers between them, in text order.
        var items = new List<(int At, string Text)>();
        var broken = BrokenInlineMath(text);
        var nextBroken = 0;
        var gapStart = 0;
        var i = 0;
        // Where the search for each closer last stopped without finding it (the end of the text, or for inline math the
        // end of the line): an opener before that point finds no closer either, so unmatched openers cost one scan.
        var missingBefore = new Dictionary<string, int>(StringComparer.Ordinal);
        while (i < text.Length)
        {
            if (nextBroken < broken.Count && broken[nextBroken].Start == i)
            {
                items.AddRange(Numbers(text, gapStart, i));
                i = gapStart = broken[nextBroken++].End;
                continue;
            }
            var (open, close) = MathOpening(text, i);
            if (open == 0) { i++; continue; }
            int end;
            if (missingBefore.TryGetValue(close, out var stop) && i + open <= stop) end = -1;
            else end = FindClose(text, i + open, close, inline: close is "$" or "\\)", out stop);
            if (end < 0) { missingBefore[close] = stop; i += open; continue; }
            while (nextBroken < broken.Count && broken[nextBroken].Start < end) nextBroken++; // inside this span
            items.AddRange(Numbers(text, gapStart, i));
            var inner = text[(i + open)..end].Trim();
            if (inner.Length > 0) items.Add((i, inner));
            i = end + close.Length;
            gapStart = i;
        }
        items.AddRange(Numbers(text, gapStart, text.Length));
        return items.Select(x => x.Text);
    }

    private static IEnumerable<(int At, string Text)> Numbers(string text, int from, int to)
    {
        if (to <= from) yield break;
        foreach (Match m in StandaloneNumberRegex().Matches(text[from..to])) yield return (from + m.Index, m.Value);
    }

    /// <summary>The length of a math opener at <paramref name="i"/> (0 if none) and its closer.</summary>
    private static (int Length, string Close) MathOpening(string text, int i)
    {
        var c = text[i];
        if (c == '$')
        {
            if (i > 0 && text[i - 1] == '\\') return (0, "");
            return i + 1 < text.Length && text[i + 1] == '$' ? (2, "$$") : (1, "$");
        }
        if (c == '\\' && i + 1 < text.Length)
        {
            if (text[i + 1] == '(') return (2, "\\)");
            if (text[i + 1] == '[') return (2, "\\]");
        }
        return (0, "");
    }

    /// <summary>
    /// The index of <paramref name="close"/> from <paramref name="from"/> on, or -1; <paramref name="inline"/>: -1 when a
    /// line break ('\n') comes first. <paramref name="stoppedAt"/>: where a search that found nothing stopped.
    /// </summary>
    private static int FindClose(string text, int from, string close, bool inline, out int stoppedAt)
    {
        for (var k = from; k <= text.Length - close.Length; k++)
        {
            if (inline && text[k] == '\n') { stoppedAt = k; return -1; }
            if (text[k] == '\\' && close[0] == '$' && k + 1 < text.Length && text[k + 1] == '$') { k++; continue; } // \$ is a dollar sign
            if (string.CompareOrdinal(text, k, close, 0, close.Length) == 0) { stoppedAt = k; return k; }
        }
        stoppedAt = text.Length;
        return -1;
    }

    /// <summary>
    /// The last number not glued to a word before it ("AZYUK2A" has none; "1,000.99m²" has 1,000.99), outside
    /// <see cref="BrokenInlineMath"/>.
    /// </summary>
    private static string? LastNumber(string text)
    {
        var broken = BrokenInlineMath(text);
        var r = 0;
        Match? last = null;
        foreach (Match m in StandaloneNumberRegex().Matches(text)) // in text order, as the ranges
        {
            while (r < broken.Count && broken[r].End <= m.Index) r++;
            if (r == broken.Count || m.Index < broken[r].Start) last = m;
        }
        return last?.Value;
    }

    /// <summary>
    /// Inline math written as display math: an inline opener (<c>$</c>, <c>\(</c>) ending its line, closed by
    /// the matching closer at the start of a later line, as in "Answer $ \n 9 \n $". Math-Verify's LaTeX extraction reads
    /// no answer there (its inline patterns end at a line break), and its tests expect the response rejected; reading the
    /// 9 as a bare number instead would reward malformed math. So the range, delimiters included, is neither a span nor
    /// text. A <c>$</c> counts as an opener (or closer) when its line holds an odd number of single dollars, so the closer
    /// of "the value $x$" ending a line opens nothing, and currency ("$5 a piece") never stands alone at a line's end.
    /// Ranges in text order, each [Start, End).
    /// </summary>
    private static List<(int Start, int End)> BrokenInlineMath(string text)
    {
        var ranges = new List<(int Start, int End)>();
        (int At, string Close)? pending = null;
        for (var lineStart = 0; lineStart < text.Length;)
        {
            var newline = text.IndexOf('\n', lineStart);
            var lineEnd = newline < 0 ? text.Length : newline;
            int first = lineStart, last = lineEnd - 1;
            while (first < lineEnd && char.IsWhiteSpace(text[first])) first++;
            while (last >= first && char.IsWhiteSpace(text[last])) last--;
            if (first <= last)
            {
                if (pending is { } p && string.CompareOrdinal(text, first, p.Close, 0, p.Close.Length) == 0
                    && (p.Close != "$" || (IsSingleDollar(text, first) && SingleDollars(text, lineStart, lineEnd) % 2 == 1)))
                {
                    ranges.Add((p.At, first + p.Close.Length));
                    pending = null;
                }
                else if (pending == null && last >= lineStart + 1 && text[last] == '(' && text[last - 1] == '\\')
                    pending = (last - 1, "\\)");
                else if (pending == null && text[last] == '$' && IsSingleDollar(text, last) && SingleDollars(text, lineStart, lineEnd) % 2 == 1)
                    pending = (last, "$");
            }
            lineStart = lineEnd + 1;
        }
        return ranges;
    }

    /// <summary>A <c>$</c> that is neither escaped nor half of <c>$$</c>.</summary>
    private static bool IsSingleDollar(string text, int k) =>
        text[k] == '$' && (k == 0 || (text[k - 1] != '\\' && text[k - 1] != '$')) && (k + 1 >= text.Length || text[k + 1] != '$');

    private static int SingleDollars(string text, int from, int to)
    {
        var n = 0;
        for (var k = from; k < to; k++) if (IsSingleDollar(text, k)) n++;
        return n;
    }

    [GeneratedRegex(@"(?<![A-Za-z\d.,])-?\d+(?:,\d{3})*(?:\.\d+)?(?:/\d+)?|(?<![A-Za-z\d])-?\.\d+")]
    private static partial Regex StandaloneNumberRegex();

    [GeneratedRegex(@"\bis\b")]
    private static partial Regex IsWordRegex();
}
