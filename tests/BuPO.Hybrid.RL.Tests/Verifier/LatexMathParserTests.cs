using System.Diagnostics;
using BuPO.Hybrid.RL.Rewards.Verifier;

namespace BuPO.Hybrid.RL.Tests.Verifier;

public class LatexMathParserTests
{
    private static string Tree(string latex) => MathTree.Canonical(LatexMathParser.Parse(latex) ?? throw new Xunit.Sdk.XunitException($"no parse: {latex}"));

    [Theory]
    [InlineData("\\frac12", "(1/2)")]
    [InlineData("\\dfrac{3}{4}", "(3/4)")]
    [InlineData("\\frac\\pi2", "(#Pi/2)")]
    [InlineData("1,000", "1000")]
    [InlineData("1 000", "1000")]
    [InlineData("12,\\!000,\\!003", "12000003")]
    [InlineData("14{,}916", "14916")]
    [InlineData(".5", "1/2")]
    [InlineData("2x", "(2*x)")]
    [InlineData("-x^2", "(-(x^2))")]
    [InlineData("2^10", "(2^10)")]
    [InlineData("10^10^10", "(10^(10^10))")]
    [InlineData("\\sqrt[3]{x}", "(x^(1/3))")]
    [InlineData("\\sin^2 x", "(Sin[x]^2)")]
    [InlineData("\\sin^{-1} x", "Arcsin[x]")]
    [InlineData("\\sin b \\cos a", "(Sin[b]*Cos[a])")]
    [InlineData("\\log_2 8", "Log[2;8]")]
    [InlineData("5!", "(5)!")]
    [InlineData("x_1 + x_{10}", "(x_1+x_10)")]
    [InlineData("204_5", "\"204_5\"")]
    [InlineData("\\alpha", "α")]
    [InlineData("e^{i\\pi}", "(#E^(#ImaginaryUnit*#Pi))")]
    [InlineData("\\text{Evelyn}", "\"evelyn\"")]
    public void Scalars_ParseToTheExpectedTree(string latex, string canonical) => Assert.Equal(canonical, Tree(latex));

    [Theory]
    [InlineData("(0,1]", "(0,1]")]
    [InlineData("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,(#Pi/2))")]
    [InlineData("\\{1,2\\}", "{1,2}")]
    [InlineData("32, 349", "<32,349>")]
    [InlineData("2 and 5", "<2,5>")]
    [InlineData("1; 3", "<1,3>")]
    [InlineData("(5)", "5")]
    [InlineData("[0,1) \\cup (2, \\infty)", "U([0,1),(2,#Infinity))")]
    [InlineData("\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix}", "M[[1,2][3,4]]")]
    [InlineData("\\begin{pmatrix}1 & 2 \\\\ 3 & 4 \\\\ \\end{pmatrix}", "M[[1,2][3,4]]")]
    [InlineData("x \\geq 5", "R(x GreaterEqual 5)")]
    [InlineData("x <= 2", "R(x LessEqual 2)")]
    [InlineData("-2 \\le x < 7", "R((-2) LessEqual x Less 7)")]
    [InlineData("x \\in [-2,7]", "R(x In [(-2),7])")]
    [InlineData("\\pm 2", "(+-2)")]
    [InlineData("1 \\pm \\sqrt{19}", "(1+-(19^(1/2)))")]
    public void Structures_ParseToTheExpectedTree(string latex, string canonical) => Assert.Equal(canonical, Tree(latex));

    [Theory]
    [InlineData("")]
    [InlineData("\\frac{1}{")]
    [InlineData("(1,2")]
    [InlineData("1 + ")]
    [InlineData("a \\dots b")]
    [InlineData("\\begin{pmatrix}1 & 2 \\\\ 3\\end{pmatrix}")]
    [InlineData("x ? y")]
    [InlineData("no solution")]
    [InlineData("3 apples and pears")]
    public void Unreadable_ParsesToNull(string latex) => Assert.Null(LatexMathParser.Parse(latex));

    [Fact]
    public void DeepNestingAndLongInputs_ParseToNullQuickly()
    {
        var sw = Stopwatch.StartNew();
        Assert.Null(LatexMathParser.Parse(new string('(', 5000) + "1" + new string(')', 5000)));
        Assert.Null(LatexMathParser.Parse(string.Concat(Enumerable.Repeat("\\sqrt{", 500)) + "2" + new string('}', 500)));
        Assert.Null(LatexMathParser.Parse(new string('-', 3000) + "1"));
        Assert.Null(LatexMathParser.Parse(string.Join("+", Enumerable.Repeat("x", 5000))));
        Assert.NotNull(LatexMathParser.Parse(string.Join("+", Enumerable.Repeat("x", 500))));
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(5), $"took {sw.Elapsed}");
    }
}
