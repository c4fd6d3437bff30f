using System.Numerics;

namespace BuPO.Hybrid.RL.Rewards.Verifier;

/// <summary>
/// Decides whether two parsed answers are the same: numbers exactly as rationals where both are rational (integers
/// exactly, other rationals within the relative tolerance, as the string grader did), otherwise by evaluating both at
/// fixed pseudo-random points in complex arithmetic; tuples and intervals in order with their brackets, sets and lists
/// in any order, <c>\pm</c> as its two values, matrices entry by entry (or numerically for matrix sums and products),
/// equations up to a nonzero factor, inequalities up to a positive factor and direction, <c>x \in S</c> and
/// <c>a &lt; x \le b</c> as intervals, and <c>x = 5</c> or <c>(p,q) = (3,2)</c> as their value.
/// </summary>
internal sealed class MathEquivalence(double relativeTolerance)
{
    private const int Points = 8;
    private const int MaxVariables = 12;
    private const int MaxNesting = 32;
    private const int MaxUnorderedItems = 64;

    /// <summary>Values of the variables at the test points: in (0.5, 2.5), away from 0 and 1, where identities are least likely to hold by chance.</summary>
    private static readonly double[][] PointValues = MakePoints();

    private static double[][] MakePoints()
    {
        var rng = new Random(20261201);
        var points = new double[Points][];
        for (var k = 0; k < Points; k++)
        {
            points[k] = new double[MaxVariables];
            for (var v = 0; v < MaxVariables; v++) points[k][v] = 0.5 + 2.0 * rng.NextDouble();
        }
        return points;
    }

    private int _nesting;

    /// <summary>Whether <paramref name="answer"/> is equivalent to <paramref name="reference"/>.</summary>
    public bool Equivalent(MathNode answer, MathNode reference)
    {
        if (++_nesting > MaxNesting) { _nesting--; return false; }
        try
        {
            return EquivalentCore(answer, reference);
        }
        finally
        {
            _nesting--;
        }
    }

    private bool EquivalentCore(MathNode a, MathNode b)
    {
        if (MathTree.Canonical(a) == MathTree.Canonical(b)) return true;
        a = DropApproximations(a);
        b = DropApproximations(b);
        if (a is RelationNode || b is RelationNode) return RelationsEquivalent(a, b);
        if (a is TextNode || b is TextNode)
            return a is TextNode ta && b is TextNode tb && string.Equals(ta.Text.Replace(" ", ""), tb.Text.Replace(" ", ""), StringComparison.OrdinalIgnoreCase);

        if (HasPlusMinus(a) || HasPlusMinus(b))
        {
            var va = Values(a);
            var vb = Values(b);
            return va != null && vb != null && Unordered(va, vb);
        }
        switch (a, b)
        {
            case (SetNode sa, SetNode sb): return Unordered(sa.Items, sb.Items);
            case (SetNode sa, ListNode lb): return Unordered(sa.Items, lb.Items);
            case (ListNode la, SetNode sb): return Unordered(la.Items, sb.Items);
            case (ListNode la, ListNode lb): return Unordered(la.Items, lb.Items);
            case (ListNode la, TupleNode tb): return Ordered(la.Items, tb.Items);
            case (TupleNode ta, ListNode lb): return Ordered(ta.Items, lb.Items);
            case (TupleNode ta, TupleNode tb): return ta.Open == tb.Open && ta.Close == tb.Close && Ordered(ta.Items, tb.Items);
            case (UnionNode ua, UnionNode ub): return Unordered(ua.Parts, ub.Parts);
            case (MatrixNode ma, MatrixNode mb):
                return ma.Rows.Count == mb.Rows.Count && ma.Rows[0].Count == mb.Rows[0].Count
                       && ma.Rows.Zip(mb.Rows).All(r => Ordered(r.First, r.Second));
        }
        if (MathTree.ContainsMatrix(a) || MathTree.ContainsMatrix(b)) return MatricesNumericallyEqual(a, b);
        if (IsStructure(a) || IsStructure(b)) return false;
        return ScalarsEquivalent(a, b);
    }

    private static bool IsStructure(MathNode n) => n is SetNode or ListNode or TupleNode or UnionNode or MatrixNode or RelationNode or TextNode;

    private static bool HasPlusMinus(MathNode n) => n switch
    {
        SetNode s => s.Items.Any(MathTree.ContainsPlusMinus),
        ListNode l => l.Items.Any(MathTree.ContainsPlusMinus),
        _ => MathTree.ContainsPlusMinus(n),
    };

    /// <summary>The values a set, list or scalar with <c>\pm</c> stands for; null for other structures or too many.</summary>
    private static List<MathNode>? Values(MathNode n)
    {
        IReadOnlyList<MathNode> items = n switch { SetNode s => s.Items, ListNode l => l.Items, _ => [n] };
        var result = new List<MathNode>();
        foreach (var item in items)
        {
            if (IsStructure(item)) return null;
            var expanded = MathTree.ExpandPlusMinus(item);
            if (expanded == null) return null;
            result.AddRange(expanded);
            if (result.Count > 32) return null;
        }
        return result;
    }

    private bool Ordered(IReadOnlyList<MathNode> a, IReadOnlyList<MathNode> b)
    {
        if (a.Count != b.Count) return false;
        for (var k = 0; k < a.Count; k++)
            if (!Equivalent(a[k], b[k])) return false;
        return true;
    }

    /// <summary>Same number of items, matched one to one in any order (greedily, as the string grader did).</summary>
    private bool Unordered(IReadOnlyList<MathNode> a, IReadOnlyList<MathNode> b)
    {
        // Matching is quadratic: longer lists are left to the string comparison.
        if (a.Count != b.Count || a.Count > MaxUnorderedItems) return false;
        var used = new bool[b.Count];
        foreach (var x in a)
        {
            var found = false;
            for (var k = 0; k < b.Count && !found; k++)
                if (!used[k] && Equivalent(x, b[k])) used[k] = found = true;
            if (!found) return false;
        }
        return true;
    }

    // ---------------------------------------------------------------- relations

    /// <summary><c>x = 1/3 \approx 0.33</c> is <c>x = 1/3</c>; <c>x \approx 11</c> is <c>x = 11</c>.</summary>
    private static MathNode DropApproximations(MathNode n)
    {
        if (n is not RelationNode r || !r.Kinds.Contains(RelationKind.Approx)) return n;
        var first = IndexOf(r.Kinds, RelationKind.Approx);
        if (first > 0 && r.Kinds.Take(first).All(k => k == RelationKind.Equal))
            return first == 1 ? r.Operands[0] is SymbolNode ? new RelationNode(r.Operands.Take(2).ToList(), [RelationKind.Equal]) : r.Operands[1]
                : new RelationNode(r.Operands.Take(first + 1).ToList(), r.Kinds.Take(first).ToList());
        if (r.Kinds.All(k => k == RelationKind.Approx)) return new RelationNode(r.Operands, r.Kinds.Select(_ => RelationKind.Equal).ToList());
        return n;
    }

    private static int IndexOf(IReadOnlyList<RelationKind> kinds, RelationKind kind)
    {
        for (var k = 0; k < kinds.Count; k++)
            if (kinds[k] == kind) return k;
        return -1;
    }

    private static bool IsLabel(MathNode n) => n is SymbolNode || n is TupleNode t && t.Items.All(x => x is SymbolNode);

    /// <summary>The value of <c>x = ... = v</c>, <c>(p,q) = v</c> or <c>x \in S</c>, or null when <paramref name="r"/> is no such labelled value.</summary>
    private static MathNode? LabelledValue(RelationNode r)
    {
        if (!IsLabel(r.Operands[0])) return null;
        if (r.Kinds.All(k => k == RelationKind.Equal)) return r.Operands[^1];
        if (r.Kinds.Count == 1 && r.Kinds[0] == RelationKind.In) return r.Operands[1];
        return null;
    }

    private static bool IsEquation(RelationNode r) => r.Kinds.All(k => k == RelationKind.Equal);

    private static bool IsInequality(RelationNode r) => r.Kinds.All(k => k is RelationKind.Less or RelationKind.LessEqual or RelationKind.Greater or RelationKind.GreaterEqual or RelationKind.NotEqual);

    private static bool HasSymbols(MathNode n)
    {
        var names = new List<string>();
        MathTree.CollectSymbols(n, names);
        return names.Count > 0;
    }

    private bool RelationsEquivalent(MathNode a, MathNode b)
    {
        var ra = a as RelationNode;
        var rb = b as RelationNode;
        var va = ra == null ? null : LabelledValue(ra);
        var vb = rb == null ? null : LabelledValue(rb);

        if (ra != null && rb != null)
        {
            if (va != null && vb != null && MathTree.Canonical(ra.Operands[0]) == MathTree.Canonical(rb.Operands[0]) && Equivalent(va, vb)) return true;
            if (IsEquation(ra) && IsEquation(rb))
                return Proportional(Difference(ra.Operands[0], ra.Operands[^1]), Difference(rb.Operands[0], rb.Operands[^1]), positive: false);
            if (IsInequality(ra) && IsInequality(rb)) return InequalitiesEquivalent(ra, rb);
            // x \in [a, b] against a <= x <= b
            if (va != null && IsInequality(rb) && ToInterval(rb) is { } ib) return Equivalent(va, ib);
            if (vb != null && IsInequality(ra) && ToInterval(ra) is { } ia) return Equivalent(ia, vb);
            return false;
        }
        if (ra != null)
        {
            if (va != null) return Equivalent(va, b);
            // "1/2 = 10/9" against 10/9: a worked value ends in the answer; an equation in the variables is not a number.
            if (IsEquation(ra) && !HasSymbols(ra.Operands[0])) return Equivalent(ra.Operands[^1], b);
            if (IsInequality(ra) && b is TupleNode or UnionNode && ToInterval(ra) is { } ia) return Equivalent(ia, b);
            return false;
        }
        // Only the answer is plain: the reference's label may be dropped ("1" for "k = 1"), not its equation ("0" for "a + 3z = 0").
        if (vb != null) return Equivalent(a, vb);
        if (IsInequality(rb!) && a is TupleNode or UnionNode && ToInterval(rb!) is { } ib2) return Equivalent(a, ib2);
        return false;
    }

    private static MathNode Difference(MathNode left, MathNode right) => new AddNode(left, new NegNode(right));

    /// <summary>Inequalities (chains too) with the same direction after flipping, each side's difference up to a positive factor.</summary>
    private bool InequalitiesEquivalent(RelationNode a, RelationNode b)
    {
        var la = Links(a);
        var lb = Links(b);
        if (la == null || lb == null || la.Count != lb.Count) return false;
        for (var k = 0; k < la.Count; k++)
        {
            if (la[k].Kind != lb[k].Kind) return false;
            if (!Proportional(la[k].Difference, lb[k].Difference, positive: la[k].Kind != RelationKind.NotEqual)) return false;
        }
        return true;
    }

    /// <summary>An inequality chain as links "difference &lt; 0", "difference &lt;= 0" or "difference != 0", in ascending order.</summary>
    private static List<(MathNode Difference, RelationKind Kind)>? Links(RelationNode r)
    {
        var ops = r.Operands.ToList();
        var kinds = r.Kinds.ToList();
        if (kinds.All(k => k is RelationKind.Greater or RelationKind.GreaterEqual) && kinds.Count > 1)
        {
            ops.Reverse();
            kinds.Reverse();
            kinds = kinds.ConvertAll(k => k == RelationKind.Greater ? RelationKind.Less : RelationKind.LessEqual);
        }
        var links = new List<(MathNode, RelationKind)>(kinds.Count);
        for (var k = 0; k < kinds.Count; k++)
        {
            var (l, rgt) = (ops[k], ops[k + 1]);
            links.Add(kinds[k] switch
            {
                RelationKind.Less => (Difference(l, rgt), RelationKind.Less),
                RelationKind.LessEqual => (Difference(l, rgt), RelationKind.LessEqual),
                RelationKind.Greater => (Difference(rgt, l), RelationKind.Less),
                RelationKind.GreaterEqual => (Difference(rgt, l), RelationKind.LessEqual),
                _ => (Difference(l, rgt), RelationKind.NotEqual),
            });
        }
        return links;
    }

    /// <summary><c>x &gt;= 5</c> as <c>[5, \infty)</c>, <c>-2 \le x &lt; 7</c> as <c>[-2, 7)</c>; null when it is no bound on one variable.</summary>
    private static TupleNode? ToInterval(RelationNode r)
    {
        MathNode infinity = new ConstantNode(MathConstant.Infinity);
        if (r.Operands.Count == 2)
        {
            var (l, rgt, k) = (r.Operands[0], r.Operands[1], r.Kinds[0]);
            if (rgt is SymbolNode && l is not SymbolNode)
            {
                (l, rgt) = (rgt, l);
                k = k switch { RelationKind.Less => RelationKind.Greater, RelationKind.LessEqual => RelationKind.GreaterEqual, RelationKind.Greater => RelationKind.Less, RelationKind.GreaterEqual => RelationKind.LessEqual, _ => k };
            }
            if (l is not SymbolNode || HasSymbols(rgt)) return null;
            return k switch
            {
                RelationKind.Less => new TupleNode([new NegNode(infinity), rgt], Bracket.Round, Bracket.Round),
                RelationKind.LessEqual => new TupleNode([new NegNode(infinity), rgt], Bracket.Round, Bracket.Square),
                RelationKind.Greater => new TupleNode([rgt, infinity], Bracket.Round, Bracket.Round),
                RelationKind.GreaterEqual => new TupleNode([rgt, infinity], Bracket.Square, Bracket.Round),
                _ => null,
            };
        }
        if (r.Operands.Count != 3 || r.Operands[1] is not SymbolNode || HasSymbols(r.Operands[0]) || HasSymbols(r.Operands[2])) return null;
        var (k1, k2) = (r.Kinds[0], r.Kinds[1]);
        static bool Up(RelationKind k) => k is RelationKind.Less or RelationKind.LessEqual;
        static bool Down(RelationKind k) => k is RelationKind.Greater or RelationKind.GreaterEqual;
        if (Up(k1) && Up(k2))
            return new TupleNode([r.Operands[0], r.Operands[2]], k1 == RelationKind.Less ? Bracket.Round : Bracket.Square, k2 == RelationKind.Less ? Bracket.Round : Bracket.Square);
        if (Down(k1) && Down(k2))
            return new TupleNode([r.Operands[2], r.Operands[0]], k2 == RelationKind.Greater ? Bracket.Round : Bracket.Square, k1 == RelationKind.Greater ? Bracket.Round : Bracket.Square);
        return null;
    }

    /// <summary>Whether <c>a = c * b</c> for one constant c (real; positive when <paramref name="positive"/>) at every test point.</summary>
    private bool Proportional(MathNode a, MathNode b, bool positive)
    {
        var names = new List<string>();
        MathTree.CollectSymbols(a, names);
        MathTree.CollectSymbols(b, names);
        if (names.Count > MaxVariables) return false;
        Complex? ratio = null;
        int valid = 0, bothZero = 0;
        for (var k = 0; k < Points; k++)
        {
            var x = Evaluate(a, names, PointValues[k]);
            var y = Evaluate(b, names, PointValues[k]);
            if (!IsFinite(x) || !IsFinite(y)) continue;
            valid++;
            var scale = Math.Max(Complex.Abs(x), Complex.Abs(y));
            if (scale < 1e-12) { bothZero++; continue; }
            if (Complex.Abs(y) < 1e-12 * scale || Complex.Abs(x) < 1e-12 * scale) return false;
            ratio ??= x / y;
            if (Complex.Abs(x - ratio.Value * y) > relativeTolerance * scale * Math.Max(1, Complex.Abs(ratio.Value))) return false;
        }
        if (valid < 3) return false;
        if (ratio == null) return bothZero == valid;
        var c = ratio.Value;
        if (Math.Abs(c.Imaginary) > 1e-9 * Complex.Abs(c)) return false;
        return !positive || c.Real > 0;
    }

    // ---------------------------------------------------------------- scalars

    private bool ScalarsEquivalent(MathNode a, MathNode b)
    {
        var ea = Exact(a);
        var eb = Exact(b);
        if (ea != null && eb != null) return NumbersMatch(ea.Value, eb.Value);
        var names = new List<string>();
        MathTree.CollectSymbols(a, names);
        MathTree.CollectSymbols(b, names);
        if (names.Count > MaxVariables) return false;
        // Against an exact integer, only floating-point noise is forgiven (4 is not 4.0000001); else the option's tolerance.
        var tolerance = ea is { IsInteger: true } || eb is { IsInteger: true } ? 1e-12 : relativeTolerance;
        var valid = 0;
        for (var k = 0; k < (names.Count == 0 ? 1 : Points); k++)
        {
            var x = Evaluate(a, names, PointValues[k]);
            var y = Evaluate(b, names, PointValues[k]);
            var fx = IsFinite(x);
            if (fx != IsFinite(y)) return false;
            if (!fx) continue;
            valid++;
            if (!Close(x, y, tolerance)) return false;
        }
        return valid >= (names.Count == 0 ? 1 : 3);
    }

    private static bool Close(Complex x, Complex y, double tolerance) =>
        Complex.Abs(x - y) <= tolerance * Math.Max(Complex.Abs(x), Complex.Abs(y)) || Complex.Abs(x - y) < 1e-12;

    private static bool IsFinite(Complex z) => double.IsFinite(z.Real) && double.IsFinite(z.Imaginary);

    private bool NumbersMatch(Rational a, Rational b)
    {
        if (a == b) return true;
        if (a.IsInteger && b.IsInteger) return false; // integers: exact only
        var x = a.ToDouble();
        var y = b.ToDouble();
        return double.IsFinite(x) && double.IsFinite(y) && Math.Abs(x - y) <= relativeTolerance * Math.Max(Math.Abs(x), Math.Abs(y));
    }

    /// <summary>The exact rational value of a constant expression, or null (irrational, symbolic, or too big to keep exact).</summary>
    internal static Rational? Exact(MathNode n)
    {
        switch (n)
        {
            case NumberNode num: return num.Value;
            case NegNode g: return Exact(g.Operand) is { } v ? -v : null;
            case AddNode a: return Exact(a.Left) is { } l && Exact(a.Right) is { } r ? l + r : null;
            case MulNode m: return Exact(m.Left) is { } l2 && Exact(m.Right) is { } r2 ? l2 * r2 : null;
            case DivNode d: return Exact(d.Numerator) is { } l3 && Exact(d.Denominator) is { } r3 ? l3 / r3 : null;
            case PowNode p:
            {
                if (Exact(p.Base) is not { } b || Exact(p.Exponent) is not { } e) return null;
                if (e.IsInteger) return Rational.Pow(b, e.Num);
                if (e.Den > 64) return null;
                return Rational.Root(b, (int)e.Den) is { } root ? Rational.Pow(root, e.Num) : null;
            }
            case FactorialNode f:
                if (Exact(f.Operand) is not { IsInteger: true } x || x.Num.Sign < 0 || x.Num > 300) return null;
                var product = BigInteger.One;
                for (var k = 2; k <= (int)x.Num; k++) product *= k;
                return Rational.Create(product, BigInteger.One);
            default: return null;
        }
    }

    /// <summary>The value of a scalar expression with the variables <paramref name="names"/> set to <paramref name="point"/>; NaN where undefined.</summary>
    internal static Complex Evaluate(MathNode n, List<string> names, double[] point)
    {
        switch (n)
        {
            case NumberNode num: return num.Value.ToDouble();
            case ConstantNode c:
                return c.Constant switch
                {
                    MathConstant.Pi => Math.PI,
                    MathConstant.E => Math.E,
                    MathConstant.ImaginaryUnit => Complex.ImaginaryOne,
                    _ => double.PositiveInfinity,
                };
            case SymbolNode s:
            {
                var k = names.IndexOf(s.Name);
                return k >= 0 && k < point.Length ? point[k] : double.NaN;
            }
            case NegNode g: return -Evaluate(g.Operand, names, point);
            case AddNode a: return Evaluate(a.Left, names, point) + Evaluate(a.Right, names, point);
            case MulNode m: return Evaluate(m.Left, names, point) * Evaluate(m.Right, names, point);
            case DivNode d:
            {
                var den = Evaluate(d.Denominator, names, point);
                return den == Complex.Zero ? double.NaN : Evaluate(d.Numerator, names, point) / den;
            }
            case PowNode p: return Power(p, names, point);
            case FactorialNode f:
            {
                var x = Evaluate(f.Operand, names, point);
                if (x.Imaginary != 0 || x.Real < 0 || x.Real > 170 || x.Real != Math.Floor(x.Real)) return double.NaN;
                var product = 1.0;
                for (var k = 2; k <= (int)x.Real; k++) product *= k;
                return product;
            }
            case FunctionNode f: return Function(f, names, point);
            default: return double.NaN;
        }
    }

    private static Complex Power(PowNode p, List<string> names, double[] point)
    {
        var b = Evaluate(p.Base, names, point);
        // A real odd root of a negative number is real (the cube root of -8 is -2), not the principal complex value.
        if (b.Imaginary == 0 && Exact(p.Exponent) is { } e)
        {
            var ed = e.ToDouble();
            if (b.Real >= 0) return Math.Pow(b.Real, ed);
            if (e.IsInteger) return Math.Pow(b.Real, ed);
            if (!e.Den.IsEven)
            {
                var magnitude = Math.Pow(-b.Real, ed);
                return e.Num.IsEven ? magnitude : -magnitude;
            }
        }
        var x = Evaluate(p.Exponent, names, point);
        if (b == Complex.Zero) return x.Real > 0 ? Complex.Zero : double.NaN;
        return Complex.Pow(b, x);
    }

    private static Complex Function(FunctionNode f, List<string> names, double[] point)
    {
        var x = Evaluate(f.Argument, names, point);
        switch (f.Function)
        {
            case MathFunction.Sin: return Complex.Sin(x);
            case MathFunction.Cos: return Complex.Cos(x);
            case MathFunction.Tan: return Complex.Tan(x);
            case MathFunction.Sec: return 1 / Complex.Cos(x);
            case MathFunction.Csc: return 1 / Complex.Sin(x);
            case MathFunction.Cot: return 1 / Complex.Tan(x);
            case MathFunction.Arcsin: return Complex.Asin(x);
            case MathFunction.Arccos: return Complex.Acos(x);
            case MathFunction.Arctan: return Complex.Atan(x);
            case MathFunction.Sinh: return Complex.Sinh(x);
            case MathFunction.Cosh: return Complex.Cosh(x);
            case MathFunction.Tanh: return Complex.Tanh(x);
            case MathFunction.Exp: return Complex.Exp(x);
            case MathFunction.Abs: return Complex.Abs(x);
            case MathFunction.Floor: return x.Imaginary == 0 ? Math.Floor(x.Real) : double.NaN;
            case MathFunction.Ceiling: return x.Imaginary == 0 ? Math.Ceiling(x.Real) : double.NaN;
            case MathFunction.Ln: return x == Complex.Zero ? double.NaN : Complex.Log(x);
            case MathFunction.Log:
            {
                if (x == Complex.Zero) return double.NaN;
                // A bare \log is base 10, as in contest problems; \log_b x is log x / log b.
                var b = f.Base == null ? (Complex)10 : Evaluate(f.Base, names, point);
                return Complex.Log(x) / Complex.Log(b);
            }
            default: return double.NaN;
        }
    }

    // ---------------------------------------------------------------- matrices

    private bool MatricesNumericallyEqual(MathNode a, MathNode b)
    {
        var names = new List<string>();
        MathTree.CollectSymbols(a, names);
        MathTree.CollectSymbols(b, names);
        if (names.Count > MaxVariables) return false;
        var valid = 0;
        for (var k = 0; k < (names.Count == 0 ? 1 : Points); k++)
        {
            var x = EvaluateMatrix(a, names, PointValues[k], 0);
            var y = EvaluateMatrix(b, names, PointValues[k], 0);
            if (x == null || y == null || x.GetLength(0) != y.GetLength(0) || x.GetLength(1) != y.GetLength(1)) return false;
            for (var i = 0; i < x.GetLength(0); i++)
                for (var j = 0; j < x.GetLength(1); j++)
                {
                    if (!IsFinite(x[i, j]) || !IsFinite(y[i, j])) return false;
                    if (!Close(x[i, j], y[i, j], relativeTolerance)) return false;
                }
            valid++;
        }
        return valid > 0;
    }

    /// <summary>A matrix expression's value (sums, products, scalar multiples, small powers); null when it is not a matrix.</summary>
    private static Complex[,]? EvaluateMatrix(MathNode n, List<string> names, double[] point, int depth)
    {
        if (depth > 64) return null;
        switch (n)
        {
            case MatrixNode m:
            {
                var result = new Complex[m.Rows.Count, m.Rows[0].Count];
                for (var i = 0; i < m.Rows.Count; i++)
                    for (var j = 0; j < m.Rows[i].Count; j++)
                        result[i, j] = Evaluate(m.Rows[i][j], names, point);
                return result;
            }
            case NegNode g: return Scale(EvaluateMatrix(g.Operand, names, point, depth + 1), -1);
            case AddNode a:
            {
                var x = EvaluateMatrix(a.Left, names, point, depth + 1);
                var y = EvaluateMatrix(a.Right, names, point, depth + 1);
                if (x == null || y == null || x.GetLength(0) != y.GetLength(0) || x.GetLength(1) != y.GetLength(1)) return null;
                var result = new Complex[x.GetLength(0), x.GetLength(1)];
                for (var i = 0; i < x.GetLength(0); i++)
                    for (var j = 0; j < x.GetLength(1); j++)
                        result[i, j] = x[i, j] + y[i, j];
                return result;
            }
            case MulNode m:
            {
                var leftIsMatrix = MathTree.ContainsMatrix(m.Left);
                var rightIsMatrix = MathTree.ContainsMatrix(m.Right);
                if (leftIsMatrix && rightIsMatrix) return Multiply(EvaluateMatrix(m.Left, names, point, depth + 1), EvaluateMatrix(m.Right, names, point, depth + 1));
                if (leftIsMatrix) return Scale(EvaluateMatrix(m.Left, names, point, depth + 1), Evaluate(m.Right, names, point));
                if (rightIsMatrix) return Scale(EvaluateMatrix(m.Right, names, point, depth + 1), Evaluate(m.Left, names, point));
                return null;
            }
            case DivNode d when !MathTree.ContainsMatrix(d.Denominator):
                return Scale(EvaluateMatrix(d.Numerator, names, point, depth + 1), 1 / Evaluate(d.Denominator, names, point));
            case PowNode p when Exact(p.Exponent) is { IsInteger: true } e && e.Num.Sign > 0 && e.Num <= 16:
            {
                var x = EvaluateMatrix(p.Base, names, point, depth + 1);
                var result = x;
                for (var k = 1; k < (int)e.Num && result != null; k++) result = Multiply(result, x);
                return result;
            }
            default: return null;
        }
    }

    private static Complex[,]? Scale(Complex[,]? m, Complex c)
    {
        if (m == null) return null;
        var result = new Complex[m.GetLength(0), m.GetLength(1)];
        for (var i = 0; i < m.GetLength(0); i++)
            for (var j = 0; j < m.GetLength(1); j++)
                result[i, j] = m[i, j] * c;
        return result;
    }

    private static Complex[,]? Multiply(Complex[,]? a, Complex[,]? b)
    {
        if (a == null || b == null || a.GetLength(1) != b.GetLength(0)) return null;
        var result = new Complex[a.GetLength(0), b.GetLength(1)];
        for (var i = 0; i < a.GetLength(0); i++)
            for (var j = 0; j < b.GetLength(1); j++)
            {
                var sum = Complex.Zero;
                for (var k = 0; k < a.GetLength(1); k++) sum += a[i, k] * b[k, j];
                result[i, j] = sum;
            }
        return result;
    }
}
