using System.Text;
using System.Text.RegularExpressions;

namespace BuPO.Hybrid.Tokenizers;

/// <summary>
/// Splits text into pre-tokens ("words") exactly as llama.cpp's <c>unicode_regex_split</c> does for one
/// <c>tokenizer.ggml.pre</c> type: a list of expressions applied in turn, each splitting the pieces left by
/// the previous one. The expressions llama.cpp implements by hand (gpt2, llama3, qwen2, qwen35, newlines) are
/// ported as code; the others go through .NET's regex on the same "collapsed" text llama.cpp feeds std::regex
/// (each codepoint replaced by one char standing for its category) or on the codepoints themselves.
/// </summary>
internal sealed class LlamaPreTokenizer
{
    private readonly Step[] _steps;
    private readonly bool _needsCollapsed, _needsWide;

    private LlamaPreTokenizer(string[] expressions)
    {
        _steps = expressions.Select(Step.Compile).ToArray();
        _needsCollapsed = _steps.Any(s => s is RegexStep { Collapsed: true });
        _needsWide = _steps.Any(s => s is RegexStep { Collapsed: false });
    }

    /// <summary>Builds the pre-tokenizer for a list of llama.cpp expressions.</summary>
    public static LlamaPreTokenizer FromExpressions(params string[] expressions) => new(expressions);

    /// <summary>
    /// Splits <paramref name="cpts"/> (one fragment's codepoints); returns the pre-token lengths in codepoints
    /// (zero lengths possible, as in llama.cpp; they yield no tokens).
    /// </summary>
    public List<int> Split(ReadOnlySpan<int> cpts)
    {
        var offsets = new List<int>(Math.Max(4, cpts.Length / 3)) { cpts.Length };
        var next = new List<int>(offsets.Capacity);
        string? collapsed = _needsCollapsed ? Collapse(cpts) : null;
        string? wide = _needsWide ? Widen(cpts) : null;
        foreach (var step in _steps)
        {
            next.Clear();
            step.Split(cpts, offsets, next, collapsed, wide);
            (offsets, next) = (next, offsets);
        }
        return offsets;
    }

    // unicode_regex_split: "collapsed" text for std::regex, one byte per codepoint
    private static string Collapse(ReadOnlySpan<int> cpts)
    {
        return string.Create(cpts.Length, cpts.ToArray(), static (dst, src) =>
        {
            for (var i = 0; i < src.Length; i++)
            {
                var c = src[i];
                if (c < 128) { dst[i] = (char)c; continue; }
                var f = LlamaUnicode.Flags(c);
                if ((f & LlamaUnicode.Whitespace) != 0) { dst[i] = '\u000B'; continue; }
                dst[i] = (f & LlamaUnicode.CategoryMask) switch
                {
                    LlamaUnicode.Number => '\u00D1',
                    LlamaUnicode.Letter => '\u00D2',
                    LlamaUnicode.Punctuation => '\u00D3',
                    LlamaUnicode.AccentMark => '\u00D4',
                    LlamaUnicode.Symbol => '\u00D5',
                    _ => '\u00D0',
                };
            }
        });
    }

    // unicode_regex_split: the text std::wregex sees (non-ASCII whitespace as \v); codepoints beyond the BMP
    // become U+FFFF, which the supported expressions (BMP-only, no class reaching U+FFFF) treat the same way.
    private static string Widen(ReadOnlySpan<int> cpts)
    {
        return string.Create(cpts.Length, cpts.ToArray(), static (dst, src) =>
        {
            for (var i = 0; i < src.Length; i++)
            {
                var c = src[i];
                if (c > 0x7F && (LlamaUnicode.Flags(c) & LlamaUnicode.Whitespace) != 0) dst[i] = '\u000B';
                else dst[i] = c > 0xFFFF ? '\uFFFF' : (char)c;
            }
        });
    }

    private abstract class Step
    {
        public abstract void Split(ReadOnlySpan<int> cpts, List<int> offsets, List<int> output, string? collapsed, string? wide);

        // the expressions unicode_regex_split_custom recognizes
        private const string Gpt2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
        private const string Llama3A = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
        private const string Llama3B = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
        private const string Qwen2 = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
        private const string Qwen35 = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
        private const string Newlines = "[^\\n]+|[\\n]+";

        public static Step Compile(string expr) => expr switch
        {
            Gpt2 => new Gpt2Step(),
            Llama3A or Llama3B => new Llama3Step(maxDigits: 3, marks: false),
            Qwen2 => new Llama3Step(maxDigits: 1, marks: false),
            Qwen35 => new Llama3Step(maxDigits: 1, marks: true),
            Newlines => new NewlinesStep(),
            _ => RegexStep.Create(expr),
        };
    }

    /// <summary>
    /// The custom splits that walk each piece codepoint by codepoint: a contraction first (<c>'s 't 're 've 'm 'll 'd</c>),
    /// else <see cref="Next"/>, which adds one token and says where the next one starts.
    /// </summary>
    private abstract class WordStep(bool contractionsIgnoreCase) : Step
    {
        public sealed override void Split(ReadOnlySpan<int> cpts, List<int> offsets, List<int> output, string? collapsed, string? wide)
        {
            var start = 0;
            foreach (var offset in offsets)
            {
                var seg = new Segment(cpts, start, start + offset, output);
                start += offset;
                for (var pos = seg.Ini; pos < seg.End;)
                {
                    var contraction = seg.ContractionEnd(pos, contractionsIgnoreCase);
                    pos = contraction > 0 ? pos + seg.Add(contraction) : Next(ref seg, pos);
                }
            }
        }

        /// <summary>Adds the token that starts at <paramref name="pos"/> (not a contraction) and returns where it ends.</summary>
        protected abstract int Next(ref Segment seg, int pos);
    }

    /// <summary>unicode_regex_split_custom_gpt2 (contractions in lower case only).</summary>
    private sealed class Gpt2Step() : WordStep(contractionsIgnoreCase: false)
    {
        private const ushort WsLetterNumber = LlamaUnicode.Whitespace | LlamaUnicode.Letter | LlamaUnicode.Number;

        protected override int Next(ref Segment seg, int pos)
        {
            var cpt = seg.Cpt(pos);
            var flags2 = cpt == ' ' ? seg.Flags(pos + 1) : seg.Flags(pos);
            if ((flags2 & LlamaUnicode.Letter) != 0)
            {
                if (cpt == ' ') pos++;
                while ((flags2 & LlamaUnicode.Letter) != 0) flags2 = seg.Flags(++pos);
                seg.Add(pos);
                return pos;
            }
            if ((flags2 & LlamaUnicode.Number) != 0)
            {
                if (cpt == ' ') pos++;
                while ((flags2 & LlamaUnicode.Number) != 0) flags2 = seg.Flags(++pos);
                seg.Add(pos);
                return pos;
            }
            if ((flags2 & WsLetterNumber) == 0 && flags2 != 0)
            {
                if (cpt == ' ') pos++;
                while ((flags2 & WsLetterNumber) == 0 && flags2 != 0) flags2 = seg.Flags(++pos);
                seg.Add(pos);
                return pos;
            }
            var ws = 0;
            while ((seg.Flags(pos + ws) & LlamaUnicode.Whitespace) != 0) ws++;
            if (ws > 1 && seg.Cpt(pos + ws) != Segment.OutOfRange) pos += ws - 1;
            else if (ws > 0) pos += ws;
            else pos++;
            seg.Add(pos);
            return pos;
        }
    }

    /// <summary>
    /// unicode_regex_split_custom_llama3 (maxDigits 3), _qwen2 (maxDigits 1) and _qwen35 (maxDigits 1, marks);
    /// contractions <c>(?i:...)</c>.
    /// </summary>
    private sealed class Llama3Step(int maxDigits, bool marks) : WordStep(contractionsIgnoreCase: true)
    {
        private readonly ushort _letter = marks ? (ushort)(LlamaUnicode.Letter | LlamaUnicode.AccentMark) : LlamaUnicode.Letter;
        private readonly ushort _wsLetterNumber = (ushort)(LlamaUnicode.Whitespace | LlamaUnicode.Number | LlamaUnicode.Letter | (marks ? LlamaUnicode.AccentMark : 0));

        protected override int Next(ref Segment seg, int pos)
        {
            var letter = _letter;
            var wsLetterNumber = _wsLetterNumber;
            var cpt = seg.Cpt(pos);
            var flags = seg.Flags(pos);
            // [^\r\n\p{L}\p{N}]?\p{L}+   (qwen35: [\p{L}\p{M}]+)
            if (!(cpt == '\r' || cpt == '\n' || (flags & LlamaUnicode.Number) != 0))
            {
                if ((flags & letter) != 0 || (seg.Flags(pos + 1) & letter) != 0)
                {
                    pos++;
                    while ((seg.Flags(pos) & letter) != 0) pos++;
                    seg.Add(pos);
                    return pos;
                }
            }
            // \p{N}{1,maxDigits}
            if ((flags & LlamaUnicode.Number) != 0)
            {
                var ini = pos;
                while ((seg.Flags(pos) & LlamaUnicode.Number) != 0)
                {
                    if (++pos - ini >= maxDigits) { seg.Add(pos); ini = pos; }
                }
                seg.Add(pos);
                return pos;
            }
            //  ?[^\s\p{L}\p{N}]+[\r\n]*
            var flags2 = cpt == ' ' ? seg.Flags(pos + 1) : flags;
            if ((flags2 & wsLetterNumber) == 0 && flags != 0)
            {
                if (cpt == ' ') pos++;
                while ((flags2 & wsLetterNumber) == 0 && flags2 != 0) flags2 = seg.Flags(++pos);
                var c2 = seg.Cpt(pos);
                while (c2 == '\r' || c2 == '\n') c2 = seg.Cpt(++pos);
                seg.Add(pos);
                return pos;
            }
            var ws = 0;
            var lastEndRn = 0;
            while ((seg.Flags(pos + ws) & LlamaUnicode.Whitespace) != 0)
            {
                var c2 = seg.Cpt(pos + ws);
                if (c2 == '\r' || c2 == '\n') lastEndRn = pos + ws + 1;
                ws++;
            }
            if (lastEndRn > 0) pos = lastEndRn;                                     // \s*[\r\n]+
            else if (ws > 1 && seg.Cpt(pos + ws) != Segment.OutOfRange) pos += ws - 1; // \s+(?!\S)
            else if (ws > 0) pos += ws;                                             // \s+
            else pos++;
            seg.Add(pos);
            return pos;
        }
    }

    /// <summary>unicode_regex_split_custom_newlines: runs of '\n' and runs of anything else.</summary>
    private sealed class NewlinesStep : Step
    {
        public override void Split(ReadOnlySpan<int> cpts, List<int> offsets, List<int> output, string? collapsed, string? wide)
        {
            var start = 0;
            foreach (var offset in offsets)
            {
                var pos = start;
                var end = start + offset;
                while (pos < end)
                {
                    var isNewline = cpts[pos] == '\n';
                    var runStart = pos;
                    while (pos < end && (cpts[pos] == '\n') == isNewline) pos++;
                    output.Add(pos - runStart);
                }
                start = end;
            }
        }
    }

    /// <summary>The std::regex fallback of unicode_regex_split, on the collapsed text or on the codepoints.</summary>
    private sealed class RegexStep : Step
    {
        private static readonly (string Name, ushort Flag)[] Categories =
        [
            ("\\p{N}", LlamaUnicode.Number), ("\\p{L}", LlamaUnicode.Letter), ("\\p{P}", LlamaUnicode.Punctuation),
            ("\\p{M}", LlamaUnicode.AccentMark), ("\\p{S}", LlamaUnicode.Symbol), ("\\p{Lu}", LlamaUnicode.Letter),
            ("\\p{Ll}", LlamaUnicode.Letter), ("\\p{Lt}", LlamaUnicode.Letter), ("\\p{Lm}", LlamaUnicode.Letter),
            ("\\p{Lo}", LlamaUnicode.Letter),
        ];

        private readonly Regex _regex;
        public bool Collapsed { get; }

        private RegexStep(Regex regex, bool collapsed) { _regex = regex; Collapsed = collapsed; }

        public static RegexStep Create(string expr)
        {
            var useCollapsed = Categories.Any(c => expr.Contains(c.Name, StringComparison.Ordinal));
            string pattern;
            if (useCollapsed)
            {
                if (expr.Any(ch => ch >= 128))
                    throw new NotSupportedException($"regex mixes unicode categories and non-ASCII characters: {expr}");
                pattern = CollapsePattern(expr);
            }
            else
            {
                if (expr.Any(ch => char.IsSurrogate(ch) || ch >= '\uFFF0'))
                    throw new NotSupportedException($"regex with characters beyond the BMP: {expr}");
                pattern = expr;
            }
            return new RegexStep(new Regex(pattern, RegexOptions.ECMAScript | RegexOptions.CultureInvariant), useCollapsed);
        }

        // unicode_regex_split: the regex rewritten for the collapsed text
        private static string CollapsePattern(string expr)
        {
            var sb = new StringBuilder(expr.Length * 2);
            var inside = false;
            for (var i = 0; i < expr.Length; i++)
            {
                if (expr[i] == '[' && (i == 0 || expr[i - 1] != '\\')) { sb.Append('['); inside = true; continue; }
                if (inside && expr[i] == ']' && expr[i - 1] != '\\') { sb.Append(']'); inside = false; continue; }
                if (expr[i] == '\\' && i + 3 < expr.Length && expr[i + 1] == 'p' && expr[i + 2] == '{')
                {
                    var close = expr.IndexOf('}', i + 3);
                    if (close >= 0 && close <= i + 10)
                    {
                        var name = expr.Substring(i, close - i + 1);
                        var cat = Array.FindIndex(Categories, c => c.Name == name);
                        if (cat >= 0)
                        {
                            if (!inside) sb.Append('[');
                            sb.Append(Categories[cat].Flag switch
                            {
                                LlamaUnicode.Number => "\u00D1" + "0-9",
                                LlamaUnicode.Letter => "\u00D2" + "A-Za-z",
                                LlamaUnicode.Punctuation => "\u00D3" + "!-#%-*,-/:-;?-@\\[-\\]_\\{\\}",
                                LlamaUnicode.AccentMark => "\u00D4",
                                _ => "\u00D5" + "\\$\\+<->^`\\|\\~",
                            });
                            if (!inside) sb.Append(']');
                            i = close;
                            continue;
                        }
                    }
                }
                sb.Append(expr[i]);
            }
            return sb.ToString();
        }

        public override void Split(ReadOnlySpan<int> cpts, List<int> offsets, List<int> output, string? collapsed, string? wide)
        {
            var text = Collapsed ? collapsed! : wide!;
            var start = 0;
            foreach (var offset in offsets)
            {
                var startIdx = 0;
                foreach (var m in _regex.EnumerateMatches(text.AsSpan(start, offset)))
                {
                    if (m.Length == 0)
                        throw new NotSupportedException($"pre-tokenizer regex produced an empty match: {_regex}");
                    if (m.Index > startIdx) output.Add(m.Index - startIdx);
                    output.Add(m.Length);
                    startIdx = m.Index + m.Length;
                }
                if (startIdx < offset) output.Add(offset - startIdx);
                start += offset;
            }
        }
    }

    /// <summary>One piece being split: bounds checks as llama.cpp's _get_cpt/_get_flags/_add_token lambdas.</summary>
    private ref struct Segment(ReadOnlySpan<int> cpts, int ini, int end, List<int> output)
    {
        public const int OutOfRange = -1;
        private readonly ReadOnlySpan<int> _cpts = cpts;
        private readonly List<int> _output = output;
        private int _prevEnd = ini;
        public readonly int Ini = ini, End = end;

        public readonly int Cpt(int pos) => pos >= Ini && pos < End ? _cpts[pos] : OutOfRange;
        public readonly ushort Flags(int pos) => pos >= Ini && pos < End ? LlamaUnicode.Flags(_cpts[pos]) : (ushort)0;

        /// <summary>
        /// Where the contraction <c>'s 't 're 've 'm 'll 'd</c> starting at <paramref name="pos"/> ends, or 0 if none
        /// starts there. gpt2 matches lower case only; llama3/qwen2 match <c>(?i:...)</c> with ASCII case folding.
        /// </summary>
        public readonly int ContractionEnd(int pos, bool ignoreCase)
        {
            if (Cpt(pos) != '\'' || pos + 1 >= End) return 0;
            var n1 = ignoreCase ? LlamaUnicode.ToLowerForContraction(Cpt(pos + 1)) : Cpt(pos + 1);
            if (n1 is 's' or 't' or 'm' or 'd') return pos + 2;
            if (pos + 2 >= End) return 0;
            var n2 = ignoreCase ? LlamaUnicode.ToLowerForContraction(Cpt(pos + 2)) : Cpt(pos + 2);
            return (n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l') ? pos + 3 : 0;
        }

        public int Add(int end)
        {
            var len = end - _prevEnd;
            if (len > 0) _output.Add(len);
            _prevEnd = end;
            return len;
        }
    }
}
