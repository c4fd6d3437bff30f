using System.Globalization;
using System.Numerics;
using System.Text;

namespace BuPO.Hybrid.RL.Rewards.Verifier;

/// <summary>Functions the parser knows.</summary>
internal enum MathFunction { Sin, Cos, Tan, Sec, Csc, Cot, Arcsin, Arccos, Arctan, Sinh, Cosh, Tanh, Ln, Log, Exp, Abs, Floor, Ceiling }

/// <summary>Named constants.</summary>
internal enum MathConstant { Pi, E, ImaginaryUnit, Infinity }

/// <summary>Relation operators; <see cref="In"/> is set membership (<c>x \in [0,1]</c>).</summary>
internal enum RelationKind { Equal, Less, LessEqual, Greater, GreaterEqual, NotEqual, Approx, In }

/// <summary>The bracket on one side of a tuple or interval.</summary>
internal enum Bracket { Round, Square }

/// <summary>A node of a parsed answer.</summary>
internal abstract record MathNode;

/// <summary>An exact rational number (decimals are read exactly too).</summary>
internal sealed record NumberNode(Rational Value) : MathNode;

internal sealed record ConstantNode(MathConstant Constant) : MathNode;

/// <summary>A variable such as <c>x</c>, <c>x_1</c> or <c>\alpha</c>.</summary>
internal sealed record SymbolNode(string Name) : MathNode;

/// <summary>Words, and numbers in another base (<c>204_5</c>): compared as text.</summary>
internal sealed record TextNode(string Text) : MathNode;

internal sealed record AddNode(MathNode Left, MathNode Right) : MathNode;

internal sealed record MulNode(MathNode Left, MathNode Right) : MathNode;

internal sealed record DivNode(MathNode Numerator, MathNode Denominator) : MathNode;

internal sealed record PowNode(MathNode Base, MathNode Exponent) : MathNode;

internal sealed record NegNode(MathNode Operand) : MathNode;

internal sealed record FactorialNode(MathNode Operand) : MathNode;

/// <summary>A function applied to an argument; <paramref name="Base"/> is a logarithm's base (null: natural for ln, 10 for log).</summary>
internal sealed record FunctionNode(MathFunction Function, MathNode Argument, MathNode? Base = null) : MathNode;

/// <summary><c>a \pm b</c>, or <c>\pm b</c> when <paramref name="Left"/> is null: two values.</summary>
internal sealed record PlusMinusNode(MathNode? Left, MathNode Right) : MathNode;

/// <summary>A tuple or an interval: <c>(1,2)</c>, <c>[0,1)</c>; ordered.</summary>
internal sealed record TupleNode(IReadOnlyList<MathNode> Items, Bracket Open, Bracket Close) : MathNode;

/// <summary>A set <c>\{1,2\}</c>: unordered.</summary>
internal sealed record SetNode(IReadOnlyList<MathNode> Items) : MathNode;

/// <summary>A bare list <c>1, 2</c> (all solutions): unordered against another list, ordered against a tuple.</summary>
internal sealed record ListNode(IReadOnlyList<MathNode> Items) : MathNode;

internal sealed record MatrixNode(IReadOnlyList<IReadOnlyList<MathNode>> Rows) : MathNode;

internal sealed record UnionNode(IReadOnlyList<MathNode> Parts) : MathNode;

/// <summary>A chain of relations: <c>Operands[0] Kinds[0] Operands[1] Kinds[1] ...</c>.</summary>
internal sealed record RelationNode(IReadOnlyList<MathNode> Operands, IReadOnlyList<RelationKind> Kinds) : MathNode;

/// <summary>Structural helpers on <see cref="MathNode"/> trees.</summary>
internal static class MathTree
{
    /// <summary>A canonical text of the tree: equal texts mean structurally equal trees (records with lists do not compare by value).</summary>
    public static string Canonical(MathNode node)
    {
        var sb = new StringBuilder();
        Write(node, sb);
        return sb.ToString();
    }

    private static void Write(MathNode node, StringBuilder sb)
    {
        switch (node)
        {
            case NumberNode n: sb.Append(n.Value.ToString()); break;
            case ConstantNode c: sb.Append('#').Append(c.Constant); break;
            case SymbolNode s: sb.Append(s.Name); break;
            case TextNode t: sb.Append('"').Append(t.Text.ToLowerInvariant()).Append('"'); break;
            case AddNode a: Pair("+", a.Left, a.Right, sb); break;
            case MulNode m: Pair("*", m.Left, m.Right, sb); break;
            case DivNode d: Pair("/", d.Numerator, d.Denominator, sb); break;
            case PowNode p: Pair("^", p.Base, p.Exponent, sb); break;
            case NegNode g: sb.Append("(-"); Write(g.Operand, sb); sb.Append(')'); break;
            case FactorialNode f: sb.Append('('); Write(f.Operand, sb); sb.Append(")!"); break;
            case FunctionNode f:
                sb.Append(f.Function).Append('[');
                if (f.Base != null) { Write(f.Base, sb); sb.Append(';'); }
                Write(f.Argument, sb);
                sb.Append(']');
                break;
            case PlusMinusNode pm:
                sb.Append('(');
                if (pm.Left != null) Write(pm.Left, sb);
                sb.Append("+-");
                Write(pm.Right, sb);
                sb.Append(')');
                break;
            case TupleNode t: Items(t.Open == Bracket.Round ? "(" : "[", t.Items, t.Close == Bracket.Round ? ")" : "]", sb); break;
            case SetNode s: Items("{", s.Items, "}", sb); break;
            case ListNode l: Items("<", l.Items, ">", sb); break;
            case UnionNode u: Items("U(", u.Parts, ")", sb); break;
            case MatrixNode m:
                sb.Append("M[");
                foreach (var row in m.Rows) Items("[", row, "]", sb);
                sb.Append(']');
                break;
            case RelationNode r:
                sb.Append("R(");
                for (var k = 0; k < r.Operands.Count; k++)
                {
                    if (k > 0) sb.Append(' ').Append(r.Kinds[k - 1]).Append(' ');
                    Write(r.Operands[k], sb);
                }
                sb.Append(')');
                break;
        }
    }

    private static void Pair(string op, MathNode a, MathNode b, StringBuilder sb)
    {
        sb.Append('(');
        Write(a, sb);
        sb.Append(op);
        Write(b, sb);
        sb.Append(')');
    }

    private static void Items(string open, IReadOnlyList<MathNode> items, string close, StringBuilder sb)
    {
        sb.Append(open);
        for (var k = 0; k < items.Count; k++)
        {
            if (k > 0) sb.Append(',');
            Write(items[k], sb);
        }
        sb.Append(close);
    }

    /// <summary>Adds the names of the free variables of <paramref name="node"/> to <paramref name="names"/> (once each).</summary>
    public static void CollectSymbols(MathNode node, List<string> names)
    {
        switch (node)
        {
            case SymbolNode s: if (!names.Contains(s.Name)) names.Add(s.Name); break;
            case AddNode a: CollectSymbols(a.Left, names); CollectSymbols(a.Right, names); break;
            case MulNode m: CollectSymbols(m.Left, names); CollectSymbols(m.Right, names); break;
            case DivNode d: CollectSymbols(d.Numerator, names); CollectSymbols(d.Denominator, names); break;
            case PowNode p: CollectSymbols(p.Base, names); CollectSymbols(p.Exponent, names); break;
            case NegNode g: CollectSymbols(g.Operand, names); break;
            case FactorialNode f: CollectSymbols(f.Operand, names); break;
            case FunctionNode f: CollectSymbols(f.Argument, names); if (f.Base != null) CollectSymbols(f.Base, names); break;
            case PlusMinusNode pm: if (pm.Left != null) CollectSymbols(pm.Left, names); CollectSymbols(pm.Right, names); break;
            case TupleNode t: foreach (var x in t.Items) CollectSymbols(x, names); break;
            case SetNode s: foreach (var x in s.Items) CollectSymbols(x, names); break;
            case ListNode l: foreach (var x in l.Items) CollectSymbols(x, names); break;
            case UnionNode u: foreach (var x in u.Parts) CollectSymbols(x, names); break;
            case MatrixNode mx: foreach (var row in mx.Rows) foreach (var x in row) CollectSymbols(x, names); break;
            case RelationNode r: foreach (var x in r.Operands) CollectSymbols(x, names); break;
        }
    }

    /// <summary>Whether the tree holds a matrix in its arithmetic (then it is evaluated as a matrix expression).</summary>
    public static bool ContainsMatrix(MathNode node) => Contains(node, static n => n is MatrixNode, throughExponentsAndFunctions: false);

    /// <summary>Whether the tree holds a <c>\pm</c> outside relations and structures.</summary>
    public static bool ContainsPlusMinus(MathNode node) => Contains(node, static n => n is PlusMinusNode, throughExponentsAndFunctions: true);

    private static bool Contains(MathNode node, Func<MathNode, bool> target, bool throughExponentsAndFunctions) => target(node) || node switch
    {
        AddNode a => Contains(a.Left, target, throughExponentsAndFunctions) || Contains(a.Right, target, throughExponentsAndFunctions),
        MulNode m => Contains(m.Left, target, throughExponentsAndFunctions) || Contains(m.Right, target, throughExponentsAndFunctions),
        DivNode d => Contains(d.Numerator, target, throughExponentsAndFunctions) || Contains(d.Denominator, target, throughExponentsAndFunctions),
        NegNode g => Contains(g.Operand, target, throughExponentsAndFunctions),
        PowNode p => Contains(p.Base, target, throughExponentsAndFunctions) || throughExponentsAndFunctions && Contains(p.Exponent, target, true),
        FunctionNode f => throughExponentsAndFunctions && Contains(f.Argument, target, true),
        _ => false,
    };

    /// <summary>
    /// The values a scalar expression with <c>\pm</c> stands for (<c>1 \pm \sqrt 2</c>: two), at most <paramref name="limit"/>;
    /// null when there would be more. An expression without <c>\pm</c> gives itself.
    /// </summary>
    public static List<MathNode>? ExpandPlusMinus(MathNode node, int limit = 16)
    {
        switch (node)
        {
            case PlusMinusNode pm:
            {
                var rights = ExpandPlusMinus(pm.Right, limit);
                if (rights == null) return null;
                var lefts = pm.Left == null ? null : ExpandPlusMinus(pm.Left, limit);
                if (pm.Left != null && lefts == null) return null;
                var result = new List<MathNode>();
                foreach (var r in rights)
                {
                    if (lefts == null) { result.Add(r); result.Add(new NegNode(r)); }
                    else foreach (var l in lefts) { result.Add(new AddNode(l, r)); result.Add(new AddNode(l, new NegNode(r))); }
                    if (result.Count > limit) return null;
                }
                return result;
            }
            case AddNode a: return Combine(a.Left, a.Right, (x, y) => new AddNode(x, y), limit);
            case MulNode m: return Combine(m.Left, m.Right, (x, y) => new MulNode(x, y), limit);
            case DivNode d: return Combine(d.Numerator, d.Denominator, (x, y) => new DivNode(x, y), limit);
            case PowNode p: return Combine(p.Base, p.Exponent, (x, y) => new PowNode(x, y), limit);
            case NegNode g: return ExpandPlusMinus(g.Operand, limit)?.ConvertAll(x => (MathNode)new NegNode(x));
            case FunctionNode f: return ExpandPlusMinus(f.Argument, limit)?.ConvertAll(x => (MathNode)(f with { Argument = x }));
            default: return [node];
        }
    }

    private static List<MathNode>? Combine(MathNode a, MathNode b, Func<MathNode, MathNode, MathNode> make, int limit)
    {
        if (!ContainsPlusMinus(a) && !ContainsPlusMinus(b)) return [make(a, b)];
        var xs = ExpandPlusMinus(a, limit);
        var ys = ExpandPlusMinus(b, limit);
        if (xs == null || ys == null || xs.Count * ys.Count > limit) return null;
        var result = new List<MathNode>(xs.Count * ys.Count);
        foreach (var x in xs) foreach (var y in ys) result.Add(make(x, y));
        return result;
    }
}

/// <summary>
/// An exact rational in lowest terms with a positive denominator. Operations that would exceed
/// <see cref="MaxBits"/> bits give null, so exact arithmetic never runs away (callers fall back to doubles).
/// </summary>
internal readonly record struct Rational(BigInteger Num, BigInteger Den)
{
    /// <summary>The largest numerator or denominator kept exact, in bits.</summary>
    public const int MaxBits = 4096;

    public static readonly Rational Zero = new(BigInteger.Zero, BigInteger.One);
    public static readonly Rational One = new(BigInteger.One, BigInteger.One);

    public bool IsInteger => Den.IsOne;

    public static Rational? Create(BigInteger num, BigInteger den)
    {
        if (den.IsZero) return null;
        if (den.Sign < 0) { num = -num; den = -den; }
        var g = BigInteger.GreatestCommonDivisor(num, den);
        if (!g.IsOne && !g.IsZero) { num /= g; den /= g; }
        if (num.GetBitLength() > MaxBits || den.GetBitLength() > MaxBits) return null;
        return new Rational(num, den);
    }

    public static Rational? operator +(Rational a, Rational b) => Create(a.Num * b.Den + b.Num * a.Den, a.Den * b.Den);
    public static Rational? operator *(Rational a, Rational b) => Create(a.Num * b.Num, a.Den * b.Den);
    public static Rational? operator /(Rational a, Rational b) => Create(a.Num * b.Den, a.Den * b.Num);
    public static Rational operator -(Rational a) => new(-a.Num, a.Den);

    /// <summary><c>a^e</c> for an integer exponent, when the result stays within <see cref="MaxBits"/>.</summary>
    public static Rational? Pow(Rational a, BigInteger e)
    {
        if (e.IsZero) return a.Num.IsZero ? null : One;
        if (a.Num.IsZero) return e.Sign > 0 ? Zero : null;
        var bits = Math.Max(a.Num.GetBitLength(), a.Den.GetBitLength());
        if (BigInteger.Abs(e) * bits > MaxBits) return bits <= 1 && a.Num.IsOne && a.Den.IsOne ? One : null;
        var k = (int)BigInteger.Abs(e);
        var num = BigInteger.Pow(a.Num, k);
        var den = BigInteger.Pow(a.Den, k);
        return e.Sign > 0 ? Create(num, den) : Create(den, num);
    }

    /// <summary>The exact <paramref name="q"/>-th root when there is a rational one (real roots of negatives for odd q), else null.</summary>
    public static Rational? Root(Rational a, int q)
    {
        if (q == 1) return a;
        if (a.Num.Sign < 0 && q % 2 == 0) return null;
        var n = IntegerRoot(BigInteger.Abs(a.Num), q);
        var d = IntegerRoot(a.Den, q);
        if (n == null || d == null) return null;
        return new Rational(a.Num.Sign < 0 ? -n.Value : n.Value, d.Value);
    }

    private static BigInteger? IntegerRoot(BigInteger x, int q)
    {
        if (x.IsZero || x.IsOne) return x;
        // Start from the double estimate and correct by one either way: exact for the sizes MaxBits allows.
        var estimate = Math.Round(Math.Exp(BigInteger.Log(x) / q));
        if (double.IsInfinity(estimate) || double.IsNaN(estimate)) return null;
        var r = new BigInteger(estimate);
        for (var delta = -1; delta <= 1; delta++)
        {
            var c = r + delta;
            if (c.Sign > 0 && BigInteger.Pow(c, q) == x) return c;
        }
        return null;
    }

    public double ToDouble()
    {
        var v = (double)Num / (double)Den;
        if (double.IsFinite(v) && (v != 0 || Num.IsZero)) return v;
        // Both huge, or the quotient underflows: go through logarithms.
        return Num.Sign * Math.Exp(BigInteger.Log(BigInteger.Abs(Num)) - BigInteger.Log(Den));
    }

    public override string ToString() => Den.IsOne ? Num.ToString(CultureInfo.InvariantCulture) : string.Create(CultureInfo.InvariantCulture, $"{Num}/{Den}");
}
