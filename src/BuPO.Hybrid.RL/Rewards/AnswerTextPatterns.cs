using System.Text.RegularExpressions;

namespace BuPO.Hybrid.RL.Rewards;

/// <summary>
/// The answer-text patterns that the string normalizer (<see cref="MathAnswerVerifier"/>) and the LaTeX reader
/// (<see cref="Verifier.LatexMathParser"/>) must read alike: a verdict must not change with the path that took it.
/// </summary>
internal static partial class AnswerTextPatterns
{
    /// <summary><c>12,\!000</c>: LaTeX's thousands idiom (a comma then a negative thin space).</summary>
    [GeneratedRegex(@",\\!\s*")]
    public static partial Regex CommaThinSpace();

    /// <summary>A whole number with comma thousands separators (<c>-1,234,567.5</c>).</summary>
    [GeneratedRegex(@"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")]
    public static partial Regex CommaThousands();

    /// <summary>A whole answer that is one word ("Evelyn", "yes"): text, not a product of letters.</summary>
    [GeneratedRegex(@"^[A-Za-z]{2,}$")]
    public static partial Regex SingleWord();
}
