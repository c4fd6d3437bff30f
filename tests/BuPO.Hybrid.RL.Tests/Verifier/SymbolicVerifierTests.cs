using System.Diagnostics;
using BuPO.Hybrid.RL.Rewards;

namespace BuPO.Hybrid.RL.Tests.Verifier;

/// <summary>The symbolic mode through <see cref="MathAnswerVerifier"/>: boxes, references, fallbacks, the strict switch.</summary>
public class SymbolicVerifierTests
{
    private static readonly MathAnswerVerifier Symbolic = new();
    private static readonly MathAnswerVerifier Strict = new(new VerifierOptions { Mode = VerifierMode.Strict });

    [Fact]
    public void Default_IsSymbolic()
    {
        Assert.Equal(VerifierMode.Symbolic, new VerifierOptions().Mode);
        Assert.True(new MathAnswerVerifier().Verify("\\boxed{x \\geq 5}", "x >= 5").Correct);
    }

    [Theory]
    [InlineData("\\boxed{x \\geq 5}", "x >= 5")]
    [InlineData("so $\\boxed{\\frac{x}{7}+\\frac{2}{7}}$", "\\frac{x+2}{7}")]
    [InlineData("\\boxed{\\cfrac{1}{3}}", "1/3")]
    [InlineData("\\boxed{-2} \\quad \\text{and} \\quad \\boxed{1}", "1,-2")]
    public void Symbolic_AcceptsWhatStrictMisses(string response, string reference)
    {
        Assert.True(Symbolic.Verify(response, reference).Correct);
        Assert.False(Strict.Verify(response, reference).Correct);
    }

    [Fact]
    public void SpacedCommas_AreAList_NotAThousandsSeparator()
    {
        Assert.False(Symbolic.Verify("\\boxed{32, 349}", "32349").Correct);
        Assert.True(Strict.Verify("\\boxed{32, 349}", "32349").Correct); // the original grader's false positive, kept in strict mode
        Assert.True(Symbolic.Verify("\\boxed{32,349}", "32349").Correct);
        Assert.True(Symbolic.Verify("\\boxed{11,\\! 111,\\! 100}", "11111100").Correct);
    }

    [Theory]
    [InlineData("\\boxed{(2, 2)} \\quad\\text{and}\\quad \\boxed{(6, 2)}", "(6,2), (2,2)", true)]
    [InlineData("$\\boxed{3}$, $\\boxed{5}$", "3, 5", true)]
    [InlineData("first \\boxed{3}, then corrected: \\boxed{4}", "3, 4", false)]
    [InlineData("first \\boxed{3}, then corrected: \\boxed{4}", "4", true)]
    [InlineData("\\boxed{1} and finally \\fbox{2}", "2", true)]
    [InlineData("\\boxed{(2, 2)} \\quad\\text{and}\\quad \\boxed{(6, 2)}", "(6,2)", false)]
    public void FinalBoxes_JoinedByConnectors_CountTogether(string response, string reference, bool expected) =>
        Assert.Equal(expected, Symbolic.Verify(response, reference).Correct);

    [Fact]
    public void GatherFinalBoxes_Off_TakesTheLastBox()
    {
        var lastOnly = new MathAnswerVerifier(new VerifierOptions { GatherFinalBoxes = false });
        Assert.False(lastOnly.Verify("\\boxed{-2} \\text{ and } \\boxed{1}", "1,-2").Correct);
        Assert.True(lastOnly.Verify("\\boxed{-2} \\text{ and } \\boxed{1}", "1").Correct);
    }

    [Theory]
    [InlineData("\\boxed{5, 2}", "2 and 5", true)]
    [InlineData("\\boxed{1, 3}", "1; 3", true)]
    [InlineData("\\boxed{1, 2}", "$\\boxed{1}\\boxed{2}$", true)]
    [InlineData("\\boxed{(3,2)}", "(p,q)=(3,2)", true)]
    [InlineData("\\boxed{[-2,7]}", "the interval is \\[ \\boxed{[-2, 7]} \\]", true)]
    [InlineData("\\boxed{1, 3}", "1; 4", false)]
    public void References_ListsLabelsAndBoxes_AreRead(string response, string reference, bool expected) =>
        Assert.Equal(expected, Symbolic.Verify(response, reference).Correct);

    [Theory]
    [InlineData("The final answer is $\\frac{10}{9}$. I hope it is correct.", "10/9", "\\frac{10}{9}")]
    [InlineData("Final Answer: The volume of $ABCDEFGH$ is 120. I hope", "120", "120")]
    [InlineData("so $x = 3$ and then $y = 4$", "4", "y = 4")]
    [InlineData("the pair is $(7, 6)$. <|im_start|>user", "(7,6)", "(7, 6)")]
    public void FinalAnswerFallback_FindsTheUnboxedAnswer(string response, string reference, string extracted)
    {
        var v = new MathAnswerVerifier(new VerifierOptions { FallbackToFinalAnswer = true });
        var r = v.Verify(response, reference);
        Assert.Equal(extracted, r.Extracted);
        Assert.Equal(AnswerSource.FinalAnswer, r.Source);
        Assert.True(r.Correct);
        Assert.False(Symbolic.Verify(response, reference).Correct); // off by default: BuPO rewards boxed answers only
    }

    // Math-Verify's LaTeX extraction reads inline math only within one line (its $..$ and \(..\) patterns exclude '\n';
    // $$..$$ and \[..\] may span lines): its tests "Answer $ \n 9 \n $" and "Answer \( \n 9 \n \)" expect no answer.
    // \sqrt{2} is no bare number to either grader, so the answer here can only come from the span.
    [Theory]
    [InlineData("Answer $ \n \\sqrt{2} \n $")]
    [InlineData("Answer \\( \n \\sqrt{2} \n \\)")]
    [InlineData("Answer $\\sqrt{2}\n$")]
    public void FinalAnswerFallback_InlineMathBrokenAcrossLines_IsNotReadAsASpan(string response)
    {
        var v = new MathAnswerVerifier(new VerifierOptions { FallbackToFinalAnswer = true, FallbackToLastNumber = true });
        var r = v.Verify(response, "\\sqrt{2}");
        Assert.NotEqual("\\sqrt{2}", r.Extracted);
        Assert.False(r.Correct);
    }

    [Theory]
    [InlineData("Answer $\\sqrt{2}$", "\\sqrt{2}")]
    [InlineData("Answer $ \\sqrt{2} $", "\\sqrt{2}")]
    [InlineData("Answer \\( \\sqrt{2} \\)", "\\sqrt{2}")]
    [InlineData("Answer $9$", "9")]
    [InlineData("Answer $$ \n \\sqrt{2} \n $$", "\\sqrt{2}")] // display math may span lines
    [InlineData("Answer \\[ \n \\sqrt{2} \n \\]", "\\sqrt{2}")]
    // A dollar whose closer is on a later line is text: it no longer swallows the opener of the answer's span.
    [InlineData("It costs $5 a piece,\nso the answer is $\\sqrt{2}$", "\\sqrt{2}")]
    [InlineData("Step 1: pay \\( 3 \nStep 2: \\(\\sqrt{2}\\)", "\\sqrt{2}")]
    public void FinalAnswerFallback_InlineMathOnOneLine_AndDisplayMath_AreStillRead(string response, string extracted)
    {
        var v = new MathAnswerVerifier(new VerifierOptions { FallbackToFinalAnswer = true, FallbackToLastNumber = true });
        var r = v.Verify(response, extracted);
        Assert.Equal(extracted, r.Extracted);
        Assert.Equal(AnswerSource.FinalAnswer, r.Source);
        Assert.True(r.Correct);
    }

    // Inline delimiters standing at the ends of their lines around the answer, as in Math-Verify's tests
    // "Answer $ \n 9 \n $" and "Answer \( \n 9 \n \)" (expected: no answer): the 9 is read neither as a span nor as a bare
    // number, by either fallback.
    [Theory]
    [InlineData("Answer $ \n 9 \n $")]
    [InlineData("Answer \\( \n 9 \n \\)")]
    [InlineData("Answer $\n9\n$ ")]
    [InlineData("We get $x$ and so $\n 9 \n$")] // the line's second single dollar opens
    public void Fallbacks_InlineMathWrittenAsDisplayMath_AreNotRead(string response)
    {
        Assert.False(new MathAnswerVerifier(new VerifierOptions { FallbackToFinalAnswer = true, FallbackToLastNumber = true }).Verify(response, "9").Correct);
        Assert.False(new MathAnswerVerifier(new VerifierOptions { FallbackToLastNumber = true }).Verify(response, "9").Correct);
    }

    [Theory]
    [InlineData("The value is $x$\n9")]                       // "$x$" closes on its line: the 9 after is text
    [InlineData("Each costs $5\nso in total $\n9")]            // currency, and a dollar never closed at a line's start
    [InlineData("Answer $ \n 3 \n $ so the total is 9")]       // a number after the broken range still counts
    [InlineData("Answer $$ \n 9 \n $$")]                      // display math may span lines
    public void Fallbacks_NumbersOutsideBrokenInlineMath_AreStillRead(string response)
    {
        var v = new MathAnswerVerifier(new VerifierOptions { FallbackToFinalAnswer = true, FallbackToLastNumber = true });
        Assert.True(v.Verify(response, "9").Correct, v.Verify(response, "9").Extracted);
        Assert.True(new MathAnswerVerifier(new VerifierOptions { FallbackToLastNumber = true }).Verify(response, "9").Correct);
    }

    [Fact]
    public void Fallbacks_ManyBrokenInlineRanges_StayFast()
    {
        var v = new MathAnswerVerifier(new VerifierOptions { FallbackToFinalAnswer = true, FallbackToLastNumber = true });
        var sw = Stopwatch.StartNew();
        Assert.True(v.Verify(string.Concat(Enumerable.Repeat("a $\n 1 2 3\n$ ", 20_000)) + "so 9", "9").Correct);
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(5), $"took {sw.Elapsed}");
    }

    [Fact]
    public void FinalAnswerFallback_ManyInlineOpenersWithoutClosersOnTheirLines_StaysFast()
    {
        var v = new MathAnswerVerifier(new VerifierOptions { FallbackToFinalAnswer = true });
        var sw = Stopwatch.StartNew();
        var oneLine = string.Concat(Enumerable.Repeat("\\( 1 ", 20_000)) + "\n\\( 1 \\) and $\\sqrt{2}$";
        Assert.Equal("\\sqrt{2}", v.Verify(oneLine, "\\sqrt{2}").Extracted);
        Assert.Equal("\\sqrt{2}", v.Verify(string.Concat(Enumerable.Repeat("$ 1 \n", 20_000)) + "\\(\\sqrt{2}\\)", "\\sqrt{2}").Extracted);
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(5), $"took {sw.Elapsed}");
    }

    [Fact]
    public void FinalAnswerFallback_OnLongResponsesWithUnclosedMath_StaysFast()
    {
        var v = new MathAnswerVerifier(new VerifierOptions { FallbackToFinalAnswer = true });
        var sw = Stopwatch.StartNew();
        Assert.Equal("7", v.Verify(string.Concat(Enumerable.Repeat("\\( 1 + ", 20_000)) + " so 7", "7").Extracted);
        Assert.True(v.Verify(string.Concat(Enumerable.Repeat("$1$ and ", 20_000)) + " final answer is $2$", "2").Correct);
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(5), $"took {sw.Elapsed}");
    }

    [Fact]
    public void FinalBoxes_AfterManyUnbalancedBoxes_StayFast()
    {
        var sw = Stopwatch.StartNew();
        Assert.True(Symbolic.Verify(string.Concat(Enumerable.Repeat("\\boxed{", 20_000)) + "\\boxed{1}", "1").Correct);
        Assert.True(Symbolic.Verify(string.Concat(Enumerable.Repeat("\\boxed{1}, ", 2_000)) + "\\boxed{1}", string.Join(",", Enumerable.Repeat("1", 2_001))).Correct);
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(5), $"took {sw.Elapsed}");
    }

    [Fact]
    public void LastNumberFallback_InSymbolicMode_SkipsDigitsInsideWords()
    {
        var v = new MathAnswerVerifier(new VerifierOptions { FallbackToLastNumber = true });
        Assert.False(v.Verify("AZYUK2A", "2").Correct);
        Assert.True(v.Verify("it's 1,000.99m²", "1000.99").Correct);
        Assert.True(new MathAnswerVerifier(new VerifierOptions { FallbackToLastNumber = true, Mode = VerifierMode.Strict }).Verify("AZYUK2A", "2").Correct);
    }

    [Theory]
    [InlineData("\\boxed{\\text{east}}", "\\text{seat}", false)]
    [InlineData("\\boxed{no solution}", "\\text{solution no}", false)]
    [InlineData("\\boxed{\\text{East}}", "east", true)]
    public void Words_AreTextNotProductsOfLetters(string response, string reference, bool expected) =>
        Assert.Equal(expected, Symbolic.Verify(response, reference).Correct);

    [Fact]
    public void AreEquivalent_FollowsTheMode()
    {
        Assert.True(Symbolic.AreEquivalent("\\sec^2(y)", "\\tan^2(y)+1"));
        Assert.False(Strict.AreEquivalent("\\sec^2(y)", "\\tan^2(y)+1"));
    }

    [Fact]
    public void AdversarialAnswers_NeitherThrowNorHang()
    {
        var sw = Stopwatch.StartNew();
        string[] answers =
        [
            "10^{10^{10}}", "10^10^10^10", "(10^{10})!", "2^{-99999999}", "\\sqrt[99999999999999999999]{2}", "0^{-1}", "\\frac{1}{0}", "\\log_1 5", "\\log_0 0",
            new string('{', 3000) + "1" + new string('}', 3000), string.Concat(Enumerable.Repeat("\\frac{1}{", 300)) + "2" + new string('}', 300),
            string.Join("+", Enumerable.Repeat("x^{x^{x}}", 150)), string.Join(",", Enumerable.Repeat("\\pm 1", 40)),
            "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}^{16}", "\\begin{pmatrix}1&2\\end{pmatrix}\\begin{pmatrix}1&2\\end{pmatrix}",
            "x < y < z < w", "= = =", "\\in \\in", "((((", "\\left(\\right)", "e^{e^{e^{e^{e^{e^{e}}}}}}", new string('9', 5000) + "!",
        ];
        foreach (var a in answers)
            foreach (var b in answers.Take(8))
            {
                _ = Symbolic.Verify($"\\boxed{{{a}}}", b);
                _ = Symbolic.Verify($"\\boxed{{{b}}}", a);
            }
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(20), $"took {sw.Elapsed}");
    }

    [Fact]
    public void RandomInputs_NeverThrow_InSymbolicModeWithFallbacks()
    {
        var v = new MathAnswerVerifier(new VerifierOptions { FallbackToFinalAnswer = true, FallbackToLastNumber = true, AcceptGsm8kMarker = true });
        var rng = new Random(99);
        const string alphabet = "\\{}()[]$%^_,.=<>-+/!&| 0123456789xyepisqrtfracboxedbeginpmatrixend\\\\";
        for (var i = 0; i < 3000; i++)
        {
            var chars = new char[rng.Next(0, 60)];
            for (var j = 0; j < chars.Length; j++) chars[j] = alphabet[rng.Next(alphabet.Length)];
            var text = new string(chars);
            _ = v.Verify(text, text);
            _ = v.Verify("\\boxed{" + text + "}", "\\boxed{" + text + "} and \\boxed{1}");
            _ = v.AreEquivalent(text, "x");
        }
    }
}
