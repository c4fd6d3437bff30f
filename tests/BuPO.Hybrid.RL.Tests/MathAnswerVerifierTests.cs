using BuPO.Hybrid.RL.Rewards;

namespace BuPO.Hybrid.RL.Tests;

public class MathAnswerVerifierTests
{
    private static readonly MathAnswerVerifier Verifier = new();

    [Theory]
    // plain and boxed integers
    [InlineData("The answer is \\boxed{42}.", "42", true)]
    [InlineData("\\boxed{42}", "43", false)]
    [InlineData("so $\\boxed{-7}$", "-7", true)]
    [InlineData("\\boxed{-7}", "7", false)]
    [InlineData("\\boxed{7}", "-7", false)]
    [InlineData("\\boxed{ 12 }", "12", true)]
    // nested braces
    [InlineData("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}", true)]
    [InlineData("\\boxed{\\frac{\\sqrt3}{2}}", "\\frac{\\sqrt{3}}{2}", true)]
    [InlineData("\\boxed{{5}}", "5", true)]
    [InlineData("\\boxed{\\{1,2\\}}", "\\{1,2\\}", true)]
    [InlineData("\\boxed{\\{2, 1\\}}", "\\{1,2\\}", true)]
    // fractions, decimals, slashes
    [InlineData("\\boxed{\\frac{1}{2}}", "0.5", true)]
    [InlineData("\\boxed{0.5}", "\\frac{1}{2}", true)]
    [InlineData("\\boxed{1/2}", "\\frac12", true)]
    [InlineData("\\boxed{\\dfrac{1}{2}}", "1/2", true)]
    [InlineData("\\boxed{\\tfrac{3}{4}}", "0.75", true)]
    [InlineData("\\boxed{\\frac{2}{4}}", "\\frac{1}{2}", true)]
    [InlineData("\\boxed{-\\frac{1}{2}}", "\\frac{-1}{2}", true)]
    [InlineData("\\boxed{-\\frac{1}{2}}", "\\frac{1}{2}", false)]
    [InlineData("\\boxed{.5}", "0.5", true)]
    [InlineData("\\boxed{\\frac{1}{3}}", "0.3333333", true)]
    [InlineData("\\boxed{\\frac{1}{3}}", "0.33", false)]
    [InlineData("\\boxed{\\frac{14}{3}}", "\\frac{14}{3}", true)]
    [InlineData("\\boxed{\\frac{1}{0}}", "1", false)]
    // thousands separators
    [InlineData("\\boxed{1,000}", "1000", true)]
    [InlineData("\\boxed{1{,}000}", "1000", true)]
    [InlineData("\\boxed{1,234,567}", "1234567", true)]
    [InlineData("\\boxed{1000}", "1,000", true)]
    [InlineData("\\boxed{\\$1,000}", "1000", true)]
    // percent, degrees, dollars
    [InlineData("\\boxed{10\\%}", "10", true)]
    [InlineData("\\boxed{10%}", "10", true)]
    [InlineData("\\boxed{90^\\circ}", "90", true)]
    [InlineData("\\boxed{90^{\\circ}}", "90^\\circ", true)]
    [InlineData("\\boxed{90 degrees}", "90", true)]
    [InlineData("\\boxed{\\$18}", "18", true)]
    [InlineData("\\boxed{18 dollars}", "18", true)]
    // units in \text and \mbox
    [InlineData("\\boxed{5\\text{ cm}}", "5", true)]
    [InlineData("\\boxed{5 \\text{cm}^2}", "5", true)]
    [InlineData("\\boxed{12\\mbox{ inches}}", "12", true)]
    [InlineData("\\boxed{\\text{Evelyn}}", "\\text{Evelyn}", true)]
    [InlineData("\\boxed{Evelyn}", "\\text{Evelyn}", true)]
    [InlineData("\\boxed{\\text{(C)}}", "C", true)]
    [InlineData("\\boxed{\\textbf{east}}", "\\text{east}", true)]
    [InlineData("\\boxed{yes}", "Yes", true)]
    // trailing zeros and leading zeros
    [InlineData("\\boxed{25.0}", "25", true)]
    [InlineData("\\boxed{25.00}", "25", true)]
    [InlineData("\\boxed{025}", "25", true)]
    [InlineData("\\boxed{25}", "025", true)]
    [InlineData("\\boxed{73}", "073", true)]
    [InlineData("\\boxed{0.150}", "0.15", true)]
    [InlineData("\\boxed{250}", "25", false)]
    // "x = 5", spacing commands, \left \right
    [InlineData("\\boxed{x = 5}", "5", true)]
    [InlineData("\\boxed{5}", "x=5", true)]
    [InlineData("\\boxed{\\theta = \\frac{\\pi}{2}}", "\\frac{\\pi}{2}", true)]
    [InlineData("\\boxed{3\\!\\,000}", "3000", true)]
    [InlineData("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)", true)]
    [InlineData("\\boxed{(3,\\frac{\\pi}{2})}", "\\left( 3, \\frac{\\pi}{2} \\right)", true)]
    [InlineData("\\boxed{\\displaystyle 4}", "4", true)]
    // surrounding parentheses, tuples, intervals, lists
    [InlineData("\\boxed{(5)}", "5", true)]
    [InlineData("\\boxed{(6,31,-1)}", "(6,31,-1)", true)]
    [InlineData("\\boxed{(6, 31, -1)}", "(6,31,-1)", true)]
    [InlineData("\\boxed{(31,6,-1)}", "(6,31,-1)", false)]
    [InlineData("\\boxed{(-2,1)}", "(-2,1)", true)]
    [InlineData("\\boxed{(0.5, 1)}", "(\\frac{1}{2},1)", true)]
    [InlineData("\\boxed{(3,4]}", "(3,4]", true)]
    [InlineData("\\boxed{[3,4]}", "(3,4]", false)]
    [InlineData("\\boxed{(3,4)}", "(3,4]", false)]
    [InlineData("\\boxed{[0, \\infty)}", "[0, \\infty)", true)]
    [InlineData("\\boxed{1, -2}", "1,-2", true)]
    [InlineData("\\boxed{-2, 1}", "1,-2", true)]
    [InlineData("\\boxed{7, 5, 3}", "3, 5, 7", true)]
    [InlineData("\\boxed{3, 5}", "3, 5, 7", false)]
    [InlineData("\\boxed{1 \\pm \\sqrt{19}}", "1 \\pm \\sqrt{19}", true)]
    // symbolic answers compared as normalized strings
    [InlineData("\\boxed{3\\sqrt{13}}", "3\\sqrt{13}", true)]
    [InlineData("\\boxed{11\\sqrt2}", "11\\sqrt{2}", true)]
    [InlineData("\\boxed{6 - 5i}", "6-5i", true)]
    [InlineData("\\boxed{p-q}", "p - q", true)]
    [InlineData("\\boxed{\\pi}", "\\pi", true)]
    [InlineData("\\boxed{2\\pi}", "\\pi", false)]
    [InlineData("\\boxed{\\begin{pmatrix} -1/3 \\\\ 2/3 \\end{pmatrix}}", "\\begin{pmatrix}-1/3\\\\2/3\\end{pmatrix}", true)]
    // multiple boxes: the last wins
    [InlineData("first \\boxed{3}, then corrected: \\boxed{4}", "4", true)]
    [InlineData("first \\boxed{4}, then corrected: \\boxed{3}", "4", false)]
    [InlineData("\\fbox{9}", "9", true)]
    [InlineData("\\boxed{1} and finally \\fbox{2}", "2", true)]
    [InlineData("\\boxed 5", "5", true)]
    [InlineData("so the answer is $\\boxed 5$.", "5", true)]
    [InlineData("\\boxed {5}", "5", true)]
    // no box, empty box, unbalanced braces: no reward, no exception
    [InlineData("The answer is 42.", "42", false)]
    [InlineData("#### 42", "42", false)]
    [InlineData("\\boxed{}", "0", false)]
    [InlineData("\\boxed{", "5", false)]
    [InlineData("\\boxed{5", "5", false)]
    [InlineData("\\boxed{\\frac{1}{2}", "0.5", false)]
    [InlineData("}}}\\boxed{5}}}", "5", true)]
    [InlineData("\\boxed}", "5", false)]
    [InlineData("\\boxed", "5", false)]
    [InlineData("", "5", false)]
    [InlineData("\\boxed{5}", "", false)]
    // large integers compare exactly
    [InlineData("\\boxed{1000001}", "1000000", false)]
    [InlineData("\\boxed{123456789012345678901234567890}", "123456789012345678901234567890", true)]
    [InlineData("\\boxed{123456789012345678901234567891}", "123456789012345678901234567890", false)]
    public void Verify_GivesTheExpectedVerdict(string response, string reference, bool expected)
    {
        var result = Verifier.Verify(response, reference);
        Assert.True(expected == result.Correct,
            $"response {response} vs {reference}: extracted '{result.Extracted}' -> '{result.Normalized}', reference -> '{result.NormalizedReference}'");
        Assert.Equal(expected ? 1.0 : 0.0, result.Reward);
    }

    [Theory]
    [InlineData("a \\boxed{x^{2}+1} b", "x^{2}+1")]
    [InlineData("\\boxed{\\frac{a}{\\sqrt{b}}}", "\\frac{a}{\\sqrt{b}}")]
    [InlineData("\\boxed{1} \\boxed{2} \\boxed{3}", "3")]
    [InlineData("\\boxed{\\}}", "\\}")]
    [InlineData("\\boxed 17.", "17")]
    [InlineData("\\boxed{}", "")]
    public void ExtractBoxed_TakesTheLastCompleteBox(string text, string expected) =>
        Assert.Equal(expected, MathAnswerVerifier.ExtractBoxed(text));

    [Theory]
    [InlineData("no box here")]
    [InlineData("\\boxed{12")]
    [InlineData("\\boxed{1} then \\boxed{2")]
    [InlineData("\\boxedx")]
    public void ExtractBoxed_IsNullWithoutACompleteLastBox(string text) => Assert.Null(MathAnswerVerifier.ExtractBoxed(text));

    [Theory]
    [InlineData("\\dfrac{3}{4}", "\\frac{3}{4}")]
    [InlineData("\\frac12", "\\frac{1}{2}")]
    [InlineData("\\frac1{10}", "\\frac{1}{10}")]
    [InlineData("3/4", "\\frac{3}{4}")]
    [InlineData("\\sqrt2", "\\sqrt{2}")]
    [InlineData("\\sqrt[3]{2}", "\\sqrt[3]{2}")]
    [InlineData(" 1,000 ", "1000")]
    [InlineData("007.50", "7.5")]
    [InlineData("-0", "0")]
    [InlineData("\\left[ 0, 1 \\right)", "[0,1)")]
    [InlineData("x = 5", "5")]
    [InlineData("10\\%", "10")]
    [InlineData("90^\\circ", "90")]
    [InlineData("5\\text{ cm}", "5")]
    [InlineData("\\text{Evelyn}", "Evelyn")]
    [InlineData("(A)", "A")]
    [InlineData("(1,2)", "(1,2)")]
    [InlineData("42.", "42")]
    public void Normalize_RewritesToCanonicalForm(string input, string expected) =>
        Assert.Equal(expected, MathAnswerVerifier.Normalize(input));

    [Fact]
    public void NoBox_IsZeroByDefault_ButTheFallbacksFindAnAnswer()
    {
        Assert.False(Verifier.Verify("So she has 42 apples.", "42").Correct);

        var lastNumber = new MathAnswerVerifier(new VerifierOptions { FallbackToLastNumber = true });
        var r = lastNumber.Verify("3 + 5 = 8, so she has 1,042 apples.", "1042");
        Assert.True(r.Correct);
        Assert.Equal(AnswerSource.LastNumber, r.Source);
        Assert.Equal("1,042", r.Extracted);

        var marker = new MathAnswerVerifier(new VerifierOptions { AcceptGsm8kMarker = true });
        var m = marker.Verify("She makes 9 * 2 = 18.\n#### 18", "18");
        Assert.True(m.Correct);
        Assert.Equal(AnswerSource.Gsm8kMarker, m.Source);
        Assert.False(marker.Verify("no marker, 18", "18").Correct);

        // A box still wins over the fallbacks.
        var both = new MathAnswerVerifier(new VerifierOptions { AcceptGsm8kMarker = true, FallbackToLastNumber = true });
        Assert.Equal(AnswerSource.Boxed, both.Verify("\\boxed{7} and 8\n#### 9", "7").Source);
        // An unbalanced last box falls back too.
        Assert.True(both.Verify("so 12. \\boxed{12", "12").Correct);
    }

    [Fact]
    public void Result_CarriesExtractedAndNormalizedAnswers()
    {
        var r = Verifier.Verify("Thus $\\boxed{\\dfrac12}$.", "0.5");
        Assert.Equal("\\dfrac12", r.Extracted);
        Assert.Equal("\\frac{1}{2}", r.Normalized);
        Assert.Equal("0.5", r.NormalizedReference);
        Assert.Equal(AnswerSource.Boxed, r.Source);
        Assert.True(r.Correct);

        var none = Verifier.Verify("no answer", "3");
        Assert.Null(none.Extracted);
        Assert.Null(none.Normalized);
        Assert.Equal(AnswerSource.None, none.Source);
        Assert.False(none.Correct);

        Assert.False(Verifier.Verify("\\boxed{3}", null).Correct);
    }

    [Fact]
    public void RandomAndAdversarialInputs_NeverThrow()
    {
        var rng = new Random(1234);
        const string alphabet = "\\{}()[]$%^_,.=-+/ 0123456789abcdefxboxedfrac";
        for (var i = 0; i < 3000; i++)
        {
            var chars = new char[rng.Next(0, 40)];
            for (var j = 0; j < chars.Length; j++) chars[j] = alphabet[rng.Next(alphabet.Length)];
            var text = new string(chars);
            _ = Verifier.Verify("\\boxed{" + text, text);
            _ = Verifier.Verify(text + "\\boxed{" + text + "}", text);
            _ = MathAnswerVerifier.Normalize(text);
        }
        _ = Verifier.Verify("\\boxed{" + new string('{', 5000) + "1" + new string('}', 5000) + "}", "1");
        _ = Verifier.Verify("\\boxed{" + new string('9', 10000) + "}", new string('9', 10000));
    }

    [Fact]
    public void DatasetReferenceAnswers_MatchThemselvesWhenBoxed()
    {
        var verifier = new MathAnswerVerifier();
        foreach (var name in new[] { "math500", "aime24", "aime25", "amc23", "gsm8k" })
        {
            var path = BuPO.Hybrid.Tests.Support.SharedAssets.RequireFile(BuPO.Hybrid.Tests.Support.SharedAssets.DataFile(name, "test"));
            foreach (var item in BuPO.Hybrid.Data.PromptDataset.Load(path))
                Assert.True(verifier.Verify($"Therefore \\boxed{{{item.Answer}}}.", item.Answer).Correct, $"{name} {item.Id}: {item.Answer}");
        }
    }
}
