using System.Globalization;
using System.Numerics;
using System.Text.RegularExpressions;

namespace BuPO.Hybrid.RL.Rewards.Verifier;

/// <summary>
/// Reads a LaTeX answer (the inside of a box, or a reference) into a <see cref="MathNode"/> tree: numbers (thousands
/// separators, decimals), <c>\frac</c>, roots, powers, trig/log functions, <c>\pi</c>, <c>e</c>, <c>i</c>, factorials,
/// tuples, intervals, sets, unions, matrices, <c>\pm</c>, relations and equations; percent, degrees, units and
/// <c>\text</c> are stripped first. Returns null when it cannot read the answer; never throws. Work is bounded:
/// inputs longer than <see cref="MaxLength"/> and nesting deeper than <see cref="MaxDepth"/> give null.
/// </summary>
internal static partial class LatexMathParser
{
    /// <summary>The longest answer read, in characters (longer ones are left to the string comparison).</summary>
    public const int MaxLength = 2000;

    /// <summary>The deepest nesting of brackets and commands read.</summary>
    public const int MaxDepth = 64;

    /// <summary>Parses <paramref name="latex"/>; null when it is not a readable answer.</summary>
    public static MathNode? Parse(string latex)
    {
        if (latex.Length > MaxLength) return null;
        try
        {
            var cleaned = Clean(latex);
            if (cleaned.Length == 0) return null;
            if (AnswerTextPatterns.SingleWord().IsMatch(cleaned)) return new TextNode(cleaned);
            // Words inside an answer ("no solution", "\text{east}") would read as products of letters, and anagrams as
            // equal: leave them to the string comparison. Function names written without a backslash are fine.
            foreach (Match m in LetterRunRegex().Matches(EnvironmentNameRegex().Replace(cleaned, "")))
                if (!BareFunctionNames.Contains(m.Value)) return null;
            var tokens = Lexer.Tokenize(cleaned);
            if (tokens == null) return null;
            var parser = new Parser(tokens);
            return parser.ParseAnswer();
        }
        catch (Exception e) when (e is FormatException or OverflowException or ArgumentException or InvalidOperationException or IndexOutOfRangeException)
        {
            return null; // a malformed answer is no answer; the verifier must never throw
        }
    }

    private static readonly string[] DegreeMarks = ["^{\\circ}", "^\\circ", "^{\\degree}", "\\degree", "\\circ", "°"];

    /// <summary>String-level cleanup before tokenizing: delimiters, spacing, units, text, thousands separators.</summary>
    internal static string Clean(string s)
    {
        // Double-escaped LaTeX ("\\frac" meant as "\frac"); a matrix row break "\\" before a letter is rare outside '&' tables.
        if (!s.Contains('&') && DoubleEscapeRegex().IsMatch(s)) s = DoubleEscapeRegex().Replace(s, "\\");
        s = s.Replace('\n', ' ').Replace('\r', ' ').Replace('\t', ' ');
        s = BraceCommaRegex().Replace(s, ",");      // 14{,}916
        s = AnswerTextPatterns.CommaThinSpace().Replace(s, ",");  // 12,\!000 (LaTeX's thousands idiom; a plain ", " is a list)
        s = s.Replace("\\$", "").Replace("$", "");
        s = s.Replace("\\(", " ").Replace("\\)", " ").Replace("\\[", " ").Replace("\\]", " ");
        s = DelimiterDotRegex().Replace(s, "");
        s = SizingRegex().Replace(s, "");
        s = SpacingRegex().Replace(s, " ");
        s = s.Replace("dfrac", "frac").Replace("tfrac", "frac").Replace("cfrac", "frac").Replace("dbinom", "binom").Replace("tbinom", "binom");
        foreach (var t in DegreeMarks) s = s.Replace(t, "");
        s = s.Replace("\\%", "").Replace("%", "");
        s = PercentWordRegex().Replace(s, "");
        s = TextConnectorRegex().Replace(s, ",");
        s = s.Trim();
        for (Match m; (m = TrailingTextUnitRegex().Match(s)).Success;) s = m.Groups[1].Value.TrimEnd();
        for (string prev = ""; prev != s;) { prev = s; s = TextWrapperRegex().Replace(s, "$1"); }
        s = WordUnitRegex().Replace(s, "");
        s = WordConnectorRegex().Replace(s, ",");
        s = s.Trim().TrimEnd('.', ' ').Trim();
        if (AnswerTextPatterns.CommaThousands().IsMatch(s)) s = s.Replace(",", "");
        else if (SpaceThousandsRegex().IsMatch(s)) s = s.Replace(" ", "");
        return s;
    }

    [GeneratedRegex(@"\\\\(?=[a-zA-Z{}])")]
    private static partial Regex DoubleEscapeRegex();

    [GeneratedRegex(@"\s*\{\s*,\s*\}\s*")]
    private static partial Regex BraceCommaRegex();

    [GeneratedRegex(@"\\(?:left|right)\s*\.")]
    private static partial Regex DelimiterDotRegex();

    [GeneratedRegex(@"\\(?:left|right|bigl|bigr|Bigl|Bigr|biggl|biggr|big|Big|bigg|Bigg|displaystyle|textstyle|limits)(?![a-zA-Z])")]
    private static partial Regex SizingRegex();

    [GeneratedRegex(@"(?<!\\)\\[!,;:> ]|\\q?quad(?![a-zA-Z])|~")]
    private static partial Regex SpacingRegex();

    [GeneratedRegex(@"(?<=[\d}])\s*(?:percentage|percent|pct)\b")]
    private static partial Regex PercentWordRegex();

    [GeneratedRegex(@"\\(?:text|textnormal|textrm|mbox|mathrm)\s*\{\s*(?:and|or)\s*\}")]
    private static partial Regex TextConnectorRegex();

    [GeneratedRegex(@"^(.*[\d})\]a-zA-Z])\s*\\(?:text|textnormal|textrm|textbf|textit|mbox|mathrm)\s*\{\s*[a-zA-Z][a-zA-Z .]*\}(?:\^\{?\d\}?)?$")]
    private static partial Regex TrailingTextUnitRegex();

    [GeneratedRegex(@"\\(?:text|textnormal|textrm|textbf|textit|texttt|mbox|mathrm|mathbf|mathit|mathsf|boldsymbol|bm|operatorname)\s*\{([^{}]*)\}")]
    private static partial Regex TextWrapperRegex();

    /// <summary>A unit word after a number ("35 cm", "125 miles", "5 cm^2").</summary>
    [GeneratedRegex(@"(?<=\d)\s*\b(?:cm|mm|km|m|meters?|metres?|inch(?:es)?|in|feet|foot|ft|yards?|yd|miles?|mi|mph|kg|grams?|g|mg|lbs?|pounds?|ounces?|oz|liters?|litres?|ml|L|seconds?|sec|minutes?|min|hours?|hrs?|h|days?|weeks?|months?|years?|dollars?|cents?|units?|degrees?|square|sq|cubic|people|students|apples)\b(?:\s*(?:\^\s*\{?\d\}?|²|³))?(?:\s+(?:units|meters|feet|inches|centimeters))?(?![a-zA-Z(])")]
    private static partial Regex WordUnitRegex();

    [GeneratedRegex(@"\s+(?:and|or)\s+")]
    private static partial Regex WordConnectorRegex();

    [GeneratedRegex(@"^-?\d{1,3}(?: \d{3})+(?:\.\d+)?$")]
    private static partial Regex SpaceThousandsRegex();

    [GeneratedRegex(@"(?<![\\a-zA-Z])[a-zA-Z]{3,}")]
    private static partial Regex LetterRunRegex();

    [GeneratedRegex(@"\\(?:begin|end)\s*\{[a-zA-Z*]*\}")]
    private static partial Regex EnvironmentNameRegex();

    /// <summary>Function names the parser reads without a backslash (<c>sin(x)</c>), longest first.</summary>
    private static readonly string[] BareFunctions = ["arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "sqrt", "sin", "cos", "tan", "sec", "csc", "cot", "log", "exp", "ln"];

    private static readonly HashSet<string> BareFunctionNames = new(BareFunctions, StringComparer.Ordinal);

    // ---------------------------------------------------------------- tokens

    internal enum TokenKind { End, Number, Letter, Command, Char, RowBreak, SetOpen, SetClose }

    internal readonly record struct Token(TokenKind Kind, string Text)
    {
        public bool Is(char c) => Kind == TokenKind.Char && Text.Length == 1 && Text[0] == c;
        public bool IsCommand(string name) => Kind == TokenKind.Command && Text == name;
    }

    private static class Lexer
    {
        public static List<Token>? Tokenize(string s)
        {
            var tokens = new List<Token>(s.Length / 2 + 4);
            var i = 0;
            while (i < s.Length)
            {
                var c = s[i];
                if (char.IsWhiteSpace(c)) { i++; continue; }
                if (char.IsAsciiDigit(c) || c == '.' && i + 1 < s.Length && char.IsAsciiDigit(s[i + 1]))
                {
                    var start = i;
                    while (i < s.Length && char.IsAsciiDigit(s[i])) i++;
                    if (i < s.Length && s[i] == '.' && i + 1 < s.Length && char.IsAsciiDigit(s[i + 1]))
                    {
                        i++;
                        while (i < s.Length && char.IsAsciiDigit(s[i])) i++;
                    }
                    tokens.Add(new Token(TokenKind.Number, s[start..i]));
                    continue;
                }
                if (char.IsAsciiLetter(c)) { tokens.Add(new Token(TokenKind.Letter, c.ToString())); i++; continue; }
                if (c == '\\')
                {
                    if (i + 1 >= s.Length) return null;
                    var n = s[i + 1];
                    if (char.IsAsciiLetter(n))
                    {
                        var start = i + 1;
                        i = start;
                        while (i < s.Length && char.IsAsciiLetter(s[i])) i++;
                        tokens.Add(new Token(TokenKind.Command, s[start..i]));
                        continue;
                    }
                    i += 2;
                    switch (n)
                    {
                        case '\\': tokens.Add(new Token(TokenKind.RowBreak, "\\\\")); break;
                        case '{': tokens.Add(new Token(TokenKind.SetOpen, "\\{")); break;
                        case '}': tokens.Add(new Token(TokenKind.SetClose, "\\}")); break;
                        case '|': tokens.Add(new Token(TokenKind.Char, "|")); break;
                        case ',' or ';' or '!' or ':' or ' ' or '>' or '%' or '$': break; // spacing, escaped signs
                        default: return null;
                    }
                    continue;
                }
                i++;
                switch (c)
                {
                    case '<' or '>' or '!' when i < s.Length && s[i] == '=':
                        tokens.Add(new Token(TokenKind.Command, c switch { '<' => "le", '>' => "ge", _ => "ne" }));
                        i++;
                        break;
                    case '≤': tokens.Add(new Token(TokenKind.Command, "le")); break;
                    case '≥': tokens.Add(new Token(TokenKind.Command, "ge")); break;
                    case '≠': tokens.Add(new Token(TokenKind.Command, "ne")); break;
                    case '×' or '·': tokens.Add(new Token(TokenKind.Char, "*")); break;
                    case '÷': tokens.Add(new Token(TokenKind.Char, "/")); break;
                    case '−' or '–': tokens.Add(new Token(TokenKind.Char, "-")); break;
                    case '∞': tokens.Add(new Token(TokenKind.Command, "infty")); break;
                    case 'π': tokens.Add(new Token(TokenKind.Command, "pi")); break;
                    case '±': tokens.Add(new Token(TokenKind.Command, "pm")); break;
                    case '√': tokens.Add(new Token(TokenKind.Command, "sqrt")); break;
                    case '²': tokens.Add(new Token(TokenKind.Char, "^")); tokens.Add(new Token(TokenKind.Number, "2")); break;
                    case '³': tokens.Add(new Token(TokenKind.Char, "^")); tokens.Add(new Token(TokenKind.Number, "3")); break;
                    case '+' or '-' or '*' or '/' or '^' or '_' or '(' or ')' or '[' or ']' or '{' or '}' or '|' or ',' or ';' or '=' or '<' or '>' or '!' or '&' or '\'':
                        tokens.Add(new Token(TokenKind.Char, c.ToString()));
                        break;
                    default: return null; // anything else (words in other scripts, '?', ...) is not an answer we read
                }
            }
            tokens.Add(new Token(TokenKind.End, ""));
            return tokens;
        }
    }

    // ---------------------------------------------------------------- parser

    private static readonly Dictionary<string, MathFunction> Functions = new(StringComparer.Ordinal)
    {
        ["sin"] = MathFunction.Sin, ["cos"] = MathFunction.Cos, ["tan"] = MathFunction.Tan, ["sec"] = MathFunction.Sec,
        ["csc"] = MathFunction.Csc, ["cot"] = MathFunction.Cot, ["arcsin"] = MathFunction.Arcsin, ["arccos"] = MathFunction.Arccos,
        ["arctan"] = MathFunction.Arctan, ["sinh"] = MathFunction.Sinh, ["cosh"] = MathFunction.Cosh, ["tanh"] = MathFunction.Tanh,
        ["ln"] = MathFunction.Ln, ["log"] = MathFunction.Log, ["exp"] = MathFunction.Exp,
    };

    private static readonly Dictionary<MathFunction, MathFunction> Inverses = new()
    {
        [MathFunction.Sin] = MathFunction.Arcsin, [MathFunction.Cos] = MathFunction.Arccos, [MathFunction.Tan] = MathFunction.Arctan,
    };

    private static readonly Dictionary<string, RelationKind> Relations = new(StringComparer.Ordinal)
    {
        ["le"] = RelationKind.LessEqual, ["leq"] = RelationKind.LessEqual, ["leqslant"] = RelationKind.LessEqual,
        ["ge"] = RelationKind.GreaterEqual, ["geq"] = RelationKind.GreaterEqual, ["geqslant"] = RelationKind.GreaterEqual,
        ["lt"] = RelationKind.Less, ["gt"] = RelationKind.Greater, ["ne"] = RelationKind.NotEqual, ["neq"] = RelationKind.NotEqual,
        ["approx"] = RelationKind.Approx, ["in"] = RelationKind.In,
    };

    /// <summary>Commands whose argument is kept as is: decorations and fonts.</summary>
    private static readonly HashSet<string> Wrappers = new(StringComparer.Ordinal)
    {
        "mathbf", "mathrm", "mathit", "boldsymbol", "bm", "vec", "overline", "hat", "bar", "tilde", "widehat", "overrightarrow", "text", "mbox", "textbf", "textnormal", "operatorname",
    };

    private static readonly Dictionary<string, string> Greek = new(StringComparer.Ordinal)
    {
        ["alpha"] = "α", ["beta"] = "β", ["gamma"] = "γ", ["delta"] = "δ", ["epsilon"] = "ε", ["varepsilon"] = "ε", ["zeta"] = "ζ",
        ["eta"] = "η", ["theta"] = "θ", ["vartheta"] = "θ", ["iota"] = "ι", ["kappa"] = "κ", ["lambda"] = "λ", ["mu"] = "μ", ["nu"] = "ν",
        ["xi"] = "ξ", ["rho"] = "ρ", ["sigma"] = "σ", ["tau"] = "τ", ["phi"] = "φ", ["varphi"] = "φ", ["chi"] = "χ", ["psi"] = "ψ",
        ["omega"] = "ω", ["Gamma"] = "Γ", ["Delta"] = "Δ", ["Theta"] = "Θ", ["Lambda"] = "Λ", ["Sigma"] = "Σ", ["Phi"] = "Φ",
        ["Psi"] = "Ψ", ["Omega"] = "Ω",
    };

    private sealed class ParseFailure : Exception;

    private sealed class Parser(List<Token> tokens)
    {
        private int _pos;
        private int _depth;

        private Token Peek => tokens[_pos];

        private Token Next() => tokens[_pos < tokens.Count - 1 ? _pos++ : _pos];

        private static ParseFailure Fail() => new();

        private void Expect(char c)
        {
            if (!Peek.Is(c)) throw Fail();
            _pos++;
        }

        public MathNode? ParseAnswer()
        {
            try
            {
                var node = ParseList(static t => t.Kind == TokenKind.End, listIfMany: true);
                return Peek.Kind == TokenKind.End ? node : null;
            }
            catch (ParseFailure)
            {
                return null;
            }
        }

        private void Enter()
        {
            if (++_depth > MaxDepth) throw Fail();
        }

        /// <summary>Comma- or semicolon-separated relations up to (not including) a token for which <paramref name="stop"/> holds.</summary>
        private List<MathNode> ParseItems(Func<Token, bool> stop)
        {
            var items = new List<MathNode>();
            if (stop(Peek)) return items;
            while (true)
            {
                items.Add(ParseRelation());
                if (Peek.Is(',') || Peek.Is(';')) { _pos++; continue; }
                if (stop(Peek)) return items;
                throw Fail();
            }
        }

        private MathNode ParseList(Func<Token, bool> stop, bool listIfMany)
        {
            var items = ParseItems(stop);
            if (items.Count == 0) throw Fail();
            return items.Count == 1 || !listIfMany ? items[0] : new ListNode(items);
        }

        private MathNode ParseRelation()
        {
            var first = ParseExpression();
            List<MathNode>? operands = null;
            List<RelationKind>? kinds = null;
            while (TryRelation(out var kind))
            {
                operands ??= [first];
                kinds ??= [];
                kinds.Add(kind);
                operands.Add(ParseExpression());
            }
            return operands == null ? first : new RelationNode(operands, kinds!);
        }

        private bool TryRelation(out RelationKind kind)
        {
            var t = Peek;
            kind = default;
            if (t.Is('=')) kind = RelationKind.Equal;
            else if (t.Is('<')) kind = RelationKind.Less;
            else if (t.Is('>')) kind = RelationKind.Greater;
            else if (t.Kind == TokenKind.Command && Relations.TryGetValue(t.Text, out var k)) kind = k;
            else return false;
            _pos++;
            return true;
        }

        private MathNode ParseExpression()
        {
            var first = ParseAdditive();
            if (!Peek.IsCommand("cup")) return first;
            var parts = new List<MathNode> { first };
            while (Peek.IsCommand("cup")) { _pos++; parts.Add(ParseAdditive()); }
            return new UnionNode(parts);
        }

        private MathNode ParseAdditive()
        {
            MathNode node;
            if (Peek.Is('+')) { _pos++; node = ParseTerm(); }
            else if (Peek.Is('-')) { _pos++; node = new NegNode(ParseTerm()); }
            else if (Peek.IsCommand("pm")) { _pos++; node = new PlusMinusNode(null, ParseTerm()); }
            else if (Peek.IsCommand("mp")) { _pos++; node = new PlusMinusNode(null, new NegNode(ParseTerm())); }
            else node = ParseTerm();
            while (true)
            {
                if (Peek.Is('+')) { _pos++; node = new AddNode(node, ParseTerm()); }
                else if (Peek.Is('-')) { _pos++; node = new AddNode(node, new NegNode(ParseTerm())); }
                else if (Peek.IsCommand("pm")) { _pos++; node = new PlusMinusNode(node, ParseTerm()); }
                else if (Peek.IsCommand("mp")) { _pos++; node = new PlusMinusNode(node, new NegNode(ParseTerm())); }
                else return node;
            }
        }

        private MathNode ParseTerm()
        {
            var node = ParseUnary();
            while (true)
            {
                var t = Peek;
                if (t.Is('*') || t.IsCommand("cdot") || t.IsCommand("times")) { _pos++; node = new MulNode(node, ParseUnary()); }
                else if (t.Is('/') || t.IsCommand("div")) { _pos++; node = new DivNode(node, ParseUnary()); }
                else if (StartsFactor(t)) node = new MulNode(node, ParsePower());
                else return node;
            }
        }

        private MathNode ParseUnary()
        {
            if (Peek.Is('-'))
            {
                _pos++;
                Enter();
                var operand = ParseUnary();
                _depth--;
                return new NegNode(operand);
            }
            if (Peek.Is('+')) { _pos++; return ParseUnary(); }
            return ParsePower();
        }

        /// <summary>Whether <paramref name="t"/> begins a factor of an implicit product (<c>2x</c>, <c>3\sqrt2</c>, <c>(a)(b)</c>).</summary>
        private static bool StartsFactor(Token t) => t.Kind switch
        {
            TokenKind.Number or TokenKind.Letter => true,
            TokenKind.Char => t.Text is "(" or "{",
            TokenKind.Command => t.Text is "frac" or "sqrt" or "binom" or "pi" or "begin" or "infty" or "mathbb" or "mathcal" or "mathfrak" or "aleph" or "ell" or "hbar"
                                 || Functions.ContainsKey(t.Text)
                                 || Greek.ContainsKey(t.Text) || Wrappers.Contains(t.Text),
            _ => false,
        };

        private MathNode ParsePower()
        {
            var node = ParsePostfix();
            if (!Peek.Is('^')) return node;
            _pos++;
            return new PowNode(node, ParseExponent());
        }

        private MathNode ParseExponent()
        {
            if (Peek.Is('{')) return ParseGroup();
            if (Peek.Is('-')) { _pos++; return new NegNode(ParseExponent()); }
            var node = ParsePostfix();
            if (!Peek.Is('^')) return node;
            _pos++;
            Enter();
            var exponent = ParseExponent(); // 10^10^10 is 10^(10^10)
            _depth--;
            return new PowNode(node, exponent);
        }

        private MathNode ParsePostfix()
        {
            var node = ParsePrimary();
            while (true)
            {
                if (Peek.Is('!')) { _pos++; node = new FactorialNode(node); }
                else if (Peek.Is('\'')) { _pos++; node = node is SymbolNode s ? new SymbolNode(s.Name + "'") : throw Fail(); }
                else if (Peek.Is('_'))
                {
                    _pos++;
                    var sub = RawArgument();
                    node = node switch
                    {
                        SymbolNode s => new SymbolNode(s.Name + "_" + sub),
                        NumberNode n when n.Value.IsInteger => new TextNode(n.Value + "_" + sub), // 204_5: a number in base 5
                        _ => throw Fail(),
                    };
                }
                else return node;
            }
        }

        /// <summary>The text of a subscript: a brace group's tokens joined, or one token.</summary>
        private string RawArgument()
        {
            if (!Peek.Is('{')) return SingleToken().Text;
            _pos++;
            var parts = new List<string>();
            var depth = 1;
            while (true)
            {
                var t = Next();
                if (t.Kind == TokenKind.End) throw Fail();
                if (t.Is('{')) depth++;
                else if (t.Is('}') && --depth == 0) return string.Concat(parts);
                parts.Add(t.Text);
            }
        }

        /// <summary>One token as a command argument (<c>\frac12</c>: "1", then "2" is left for the next).</summary>
        private Token SingleToken()
        {
            var t = Peek;
            if (t.Kind == TokenKind.End || t.Kind == TokenKind.Char && t.Text != "'") throw Fail();
            if (t.Kind == TokenKind.Number && t.Text.Length > 1)
            {
                tokens[_pos] = new Token(TokenKind.Number, t.Text[1..].StartsWith('.') ? "0" + t.Text[1..] : t.Text[1..]);
                return new Token(TokenKind.Number, t.Text[..1]);
            }
            _pos++;
            return t;
        }

        /// <summary>A command's argument: a brace group, or a single token.</summary>
        private MathNode ParseArgument()
        {
            if (Peek.Is('{')) return ParseGroup();
            var t = SingleToken();
            return t.Kind switch
            {
                TokenKind.Number => Number(t.Text),
                TokenKind.Letter => Letter(t.Text[0]),
                TokenKind.Command => CommandAtom(t.Text),
                _ => throw Fail(),
            };
        }

        private MathNode ParseGroup()
        {
            Expect('{');
            Enter();
            var node = ParseList(static t => t.Is('}'), listIfMany: true);
            _depth--;
            Expect('}');
            return node;
        }

        private MathNode ParsePrimary()
        {
            var t = Peek;
            switch (t.Kind)
            {
                case TokenKind.Number: _pos++; return Number(t.Text);
                case TokenKind.Letter: return ParseLetters();
                case TokenKind.SetOpen:
                {
                    _pos++;
                    Enter();
                    var items = ParseItems(static x => x.Kind == TokenKind.SetClose);
                    _depth--;
                    _pos++;
                    return new SetNode(items);
                }
                case TokenKind.Char when t.Text is "(" or "[":
                {
                    _pos++;
                    Enter();
                    var items = ParseItems(static x => x.Is(')') || x.Is(']'));
                    _depth--;
                    var close = Next().Text == ")" ? Bracket.Round : Bracket.Square;
                    var open = t.Text == "(" ? Bracket.Round : Bracket.Square;
                    if (items.Count == 0) throw Fail();
                    if (items.Count == 1 && open == close) return items[0];
                    return new TupleNode(items, open, close);
                }
                case TokenKind.Char when t.Text == "{": return ParseGroup();
                case TokenKind.Char when t.Text == "|":
                {
                    _pos++;
                    Enter();
                    var inner = ParseAdditive();
                    _depth--;
                    Expect('|');
                    return new FunctionNode(MathFunction.Abs, inner);
                }
                case TokenKind.Command: _pos++; return ParseCommand(t.Text);
                default: throw Fail();
            }
        }

        /// <summary>Letters: a function name written without a backslash (<c>sin</c>, <c>sqrt</c>), or one variable.</summary>
        private MathNode ParseLetters()
        {
            var end = _pos;
            while (tokens[end].Kind == TokenKind.Letter && end - _pos < 8) end++;
            var word = string.Concat(tokens.Skip(_pos).Take(end - _pos).Select(x => x.Text));
            foreach (var name in BareFunctions)
            {
                if (!word.StartsWith(name, StringComparison.Ordinal)) continue;
                var after = tokens[_pos + name.Length];
                if (!after.Is('(') && !(name.Length >= 3 && after.Kind != TokenKind.Letter)) continue;
                _pos += name.Length;
                return name == "sqrt" ? new PowNode(ParsePrimary(), Half) : ParseFunction(Functions[name]);
            }
            _pos++;
            // f(0), g(x+1): a function's value, an unknown of its own, not f times 0 (which would equal 0).
            if (word[0] is 'f' or 'g' or 'h' && Peek.Is('('))
                return new SymbolNode($"{word[0]}({MathTree.Canonical(ParsePrimary())})");
            return Letter(word[0]);
        }

        private static readonly MathNode Half = new NumberNode(new Rational(BigInteger.One, new BigInteger(2)));

        private static MathNode Letter(char c) => c switch
        {
            'e' => new ConstantNode(MathConstant.E),
            'i' => new ConstantNode(MathConstant.ImaginaryUnit),
            _ => new SymbolNode(c.ToString()),
        };

        private static MathNode Number(string text)
        {
            var dot = text.IndexOf('.');
            var digits = dot < 0 ? text : text.Remove(dot, 1);
            var scale = dot < 0 ? 0 : text.Length - dot - 1;
            if (digits.Length > 1000) throw Fail();
            var value = Rational.Create(BigInteger.Parse(digits, CultureInfo.InvariantCulture), BigInteger.Pow(10, scale)) ?? throw Fail();
            return new NumberNode(value);
        }

        /// <summary>A command used as a single-token argument (<c>\frac\pi2</c>).</summary>
        private MathNode CommandAtom(string name) => name switch
        {
            "pi" => new ConstantNode(MathConstant.Pi),
            "infty" => new ConstantNode(MathConstant.Infinity),
            _ when Greek.TryGetValue(name, out var g) => new SymbolNode(g),
            _ => throw Fail(),
        };

        private MathNode ParseCommand(string name)
        {
            Enter();
            try
            {
                switch (name)
                {
                    case "frac":
                    {
                        var num = ParseArgument();
                        var den = ParseArgument();
                        return new DivNode(num, den);
                    }
                    case "sqrt":
                    {
                        MathNode index = new NumberNode(new Rational(new BigInteger(2), BigInteger.One));
                        if (Peek.Is('['))
                        {
                            _pos++;
                            index = ParseRelation();
                            Expect(']');
                        }
                        var radicand = ParseArgument();
                        return new PowNode(radicand, new DivNode(new NumberNode(Rational.One), index));
                    }
                    case "pi": return new ConstantNode(MathConstant.Pi);
                    case "infty" or "infin": return new ConstantNode(MathConstant.Infinity);
                    case "emptyset" or "varnothing": return new SetNode([]);
                    case "mathbb" or "mathcal" or "mathfrak" or "mathscr": return new SymbolNode($"\\{name}{{{RawArgument()}}}"); // \mathbb{R}: a name
                    case "aleph" or "beth" or "ell" or "hbar" or "top" or "perp": return new SymbolNode("\\" + name);
                    case "begin": return ParseEnvironment();
                    case "lvert" or "vert":
                    {
                        var inner = ParseAdditive();
                        if (!Peek.IsCommand("rvert") && !Peek.IsCommand("vert")) throw Fail();
                        _pos++;
                        return new FunctionNode(MathFunction.Abs, inner);
                    }
                    case "lfloor" or "lceil":
                    {
                        var inner = ParseAdditive();
                        if (!Peek.IsCommand(name == "lfloor" ? "rfloor" : "rceil")) throw Fail();
                        _pos++;
                        return new FunctionNode(name == "lfloor" ? MathFunction.Floor : MathFunction.Ceiling, inner);
                    }
                    case "binom":
                    {
                        var n = ParseArgument();
                        var k = ParseArgument();
                        return new DivNode(new FactorialNode(n), new MulNode(new FactorialNode(k), new FactorialNode(new AddNode(n, new NegNode(k)))));
                    }
                }
                if (Functions.TryGetValue(name, out var f)) return ParseFunction(f);
                if (Greek.TryGetValue(name, out var g)) return new SymbolNode(g);
                if (Wrappers.Contains(name)) return ParseArgument();
                throw Fail(); // \dots, \cdots, \mid, unknown commands: not an answer we can compare
            }
            finally
            {
                _depth--;
            }
        }

        /// <summary>A function after its name: optional <c>^2</c> (or <c>^{-1}</c>, the inverse), optional log base, then the argument.</summary>
        private MathNode ParseFunction(MathFunction f)
        {
            MathNode? power = null, logBase = null;
            for (var k = 0; k < 2; k++)
            {
                if (Peek.Is('^') && power == null) { _pos++; power = ParseExponent(); }
                else if (Peek.Is('_') && f == MathFunction.Log && logBase == null) { _pos++; logBase = ParseArgument(); }
            }
            if (power is NegNode { Operand: NumberNode { Value: { Num.IsOne: true, Den.IsOne: true } } } && Inverses.TryGetValue(f, out var inverse))
            {
                f = inverse;
                power = null;
            }
            MathNode argument;
            if (Peek.Is('(')) argument = ParsePrimary();
            else if (Peek.Is('{')) argument = ParseGroup();
            else
            {
                // \sin 2x: the argument runs over an implicit product, up to the next function or operator.
                argument = ParsePower();
                while (StartsFactor(Peek) && !(Peek.Kind == TokenKind.Command && Functions.ContainsKey(Peek.Text)) && !Peek.Is('('))
                    argument = new MulNode(argument, ParsePower());
            }
            MathNode node = new FunctionNode(f, argument, logBase);
            return power == null ? node : new PowNode(node, power);
        }

        private MathNode ParseEnvironment()
        {
            var env = RawArgument();
            if (env is not ("pmatrix" or "bmatrix" or "matrix" or "vmatrix" or "Bmatrix" or "smallmatrix" or "array")) throw Fail();
            if (env == "array" && Peek.Is('{')) RawArgument(); // the column spec {cc}
            var rows = new List<IReadOnlyList<MathNode>>();
            var row = new List<MathNode>();
            while (true)
            {
                if (Peek.IsCommand("end"))
                {
                    _pos++;
                    if (RawArgument() != env) throw Fail();
                    if (row.Count > 0) rows.Add(row);
                    break;
                }
                if (Peek.Kind == TokenKind.RowBreak)
                {
                    _pos++;
                    if (row.Count > 0) rows.Add(row);
                    row = [];
                    continue;
                }
                row.Add(ParseRelation());
                if (Peek.Is('&')) _pos++;
                else if (Peek.Kind != TokenKind.RowBreak && !Peek.IsCommand("end")) throw Fail();
            }
            if (rows.Count == 0 || rows.Any(r => r.Count != rows[0].Count)) throw Fail();
            return new MatrixNode(rows);
        }
    }
}
