using System.Globalization;
using System.Text;
using System.Text.Json;
using BuPO.Hybrid.Data;

namespace BuPO.Hybrid.Demo;

/// <summary>Which split a problem falls on (a fixed function of its canonical expression, so the splits are disjoint).</summary>
public enum TaskSplit
{
    /// <summary>Supervised fine-tuning data.</summary>
    Train,
    /// <summary>Evaluation only.</summary>
    HeldOut,
    /// <summary>RL prompts: problems the SFT never saw, like the held-out ones (empty unless <see cref="ArithmeticTaskOptions.RlFraction"/> &gt; 0).</summary>
    Rl,
}

/// <summary>A flaw of a demonstration (<see cref="ArithmeticTask.With(DemonstrationFlaw)"/>), as distilled data has flaws.</summary>
public enum DemonstrationFlaw
{
    /// <summary>The solution as generated.</summary>
    None,
    /// <summary>The last operation left out; the box holds the amount before it.</summary>
    DropLastStep,
    /// <summary>Every step worked out, but the box holds the amount before the last operation.</summary>
    StaleBox,
}

/// <summary>Options of <see cref="ArithmeticTaskGenerator"/>. Difficulty is the number of steps and the operand size.</summary>
public sealed record ArithmeticTaskOptions
{
    /// <summary>Fewest operations per problem (at least 1).</summary>
    public int MinSteps { get; init; } = 1;

    /// <summary>Most operations per problem (at most <see cref="ArithmeticTaskGenerator.MaxStepsLimit"/>).</summary>
    public int MaxSteps { get; init; } = 4;

    /// <summary>Largest starting amount and largest number added or taken away (at least 2).</summary>
    public int MaxOperand { get; init; } = 9;

    /// <summary>Largest factor of the "times as many" and "equal groups" steps (2 or more; below 2 turns them off).</summary>
    public int MaxFactor { get; init; } = 3;

    /// <summary>Bound on the answer and every intermediate amount (all stay in [0, MaxValue]).</summary>
    public int MaxValue { get; init; } = 99;

    /// <summary>The share of canonical problems reserved for the held-out split, in (0, 1).</summary>
    public double HeldOutFraction { get; init; } = 0.1;

    /// <summary>
    /// The share reserved for RL prompts, in [0, 1 - held-out). RL on problems the SFT memorized teaches nothing that
    /// carries over to unseen ones; RL on unseen problems does.
    /// </summary>
    public double RlFraction { get; init; }

    internal void Validate()
    {
        if (MinSteps < 1 || MaxSteps > ArithmeticTaskGenerator.MaxStepsLimit || MinSteps > MaxSteps)
            throw new BupoException($"steps: need 1 <= min steps ({MinSteps}) <= max steps ({MaxSteps}) <= {ArithmeticTaskGenerator.MaxStepsLimit}");
        if (MaxOperand < 2) throw new BupoException($"max operand must be at least 2, got {MaxOperand}");
        if (MaxValue < MaxOperand) throw new BupoException($"max value ({MaxValue}) must be at least the max operand ({MaxOperand})");
        if (!(HeldOutFraction > 0 && HeldOutFraction < 1)) throw new BupoException($"held-out fraction must be in (0, 1), got {HeldOutFraction}");
        if (!(RlFraction >= 0 && HeldOutFraction + RlFraction < 1)) throw new BupoException($"RL fraction must be in [0, 1 - held-out fraction), got {RlFraction}");
    }
}

/// <summary>
/// One generated problem.
/// </summary>
/// <param name="Problem">The story, e.g. "Tom has 3 apples. He buys 5 more. He gives away 2. How many apples does Tom have now?"</param>
/// <param name="Solution">The worked solution, e.g. "3+5=8. 8-2=6. \boxed{6}".</param>
/// <param name="Answer">The final amount (non-negative, at most the options' MaxValue).</param>
/// <param name="Steps">The number of operations.</param>
/// <param name="Expression">The canonical problem, the chain of operations evaluated left to right ("3+5-2"); the split is a
/// function of it, so one arithmetic problem never lands in both splits whatever story dresses it.</param>
/// <param name="Split">Its split.</param>
public sealed record ArithmeticTask(string Problem, string Solution, int Answer, int Steps, string Expression, TaskSplit Split)
{
    /// <summary>What the demo model sees: <c>"Q: &lt;problem&gt;\nA: "</c>.</summary>
    public string Prompt => ArithmeticTaskGenerator.FormatPrompt(Problem);

    /// <summary>The prompt followed by the solution: one supervised training text.</summary>
    public string Text => Prompt + Solution;

    /// <summary>
    /// This task with a flawed solution that leaves out the last operation and boxes the amount before it
    /// ("3+5=8. 8-2=6. \boxed{6}" becomes "3+5=8. \boxed{8}"; a one-step "3+5=8. \boxed{8}" becomes "\boxed{3}").
    /// <see cref="Answer"/> stays the true one.
    /// </summary>
    public ArithmeticTask WithoutLastStep()
    {
        var (steps, before) = StepsAndAmountBeforeLast();
        return this with { Solution = string.Concat(steps[..^1].Select(l => l + ". ")) + "\\boxed{" + before + "}" };
    }

    /// <summary>
    /// This task with a flawed solution whose worked steps are all there and right but whose box holds the amount before
    /// the last operation ("3+5=8. 8-2=6. \boxed{6}" becomes "3+5=8. 8-2=6. \boxed{8}"). <see cref="Answer"/> stays the
    /// true one.
    /// </summary>
    public ArithmeticTask WithStaleBox()
    {
        var (steps, before) = StepsAndAmountBeforeLast();
        return this with { Solution = string.Concat(steps.Select(l => l + ". ")) + "\\boxed{" + before + "}" };
    }

    /// <summary>This task with <paramref name="flaw"/> applied to its solution.</summary>
    public ArithmeticTask With(DemonstrationFlaw flaw) => flaw switch
    {
        DemonstrationFlaw.None => this,
        DemonstrationFlaw.DropLastStep => WithoutLastStep(),
        DemonstrationFlaw.StaleBox => WithStaleBox(),
        _ => throw new ArgumentOutOfRangeException(nameof(flaw), flaw, null),
    };

    private (string[] Steps, string AmountBeforeLast) StepsAndAmountBeforeLast()
    {
        // Solution: "l1. l2. ... ln. \boxed{N}" with li = "a<op>b=c"; the amount before step n is step n's left operand.
        var steps = Solution.Split(". ")[..^1];
        var last = steps[^1];
        return (steps, last[..last.IndexOfAny(['+', '-', '*', '/'])]);
    }

    /// <summary>As a dataset item (problem, answer and solution; the prompt format is applied by <see cref="ArithmeticTaskGenerator.FormatPrompt"/>).</summary>
    public PromptItem ToPromptItem(string id) => new(id, Problem, Answer.ToString(CultureInfo.InvariantCulture), Solution);
}

/// <summary>
/// Seeded generator of multi-step arithmetic word problems with integer answers ("Tom has 3 apples. He buys 5 more. He
/// gives away 2. How many apples does Tom have now?") and step-by-step solutions ending in <c>\boxed{N}</c>
/// ("3+5=8. 8-2=6. \boxed{6}"), for the demo. The same seed and options give the same sequence on every machine (its own
/// SplitMix64 generator, no <see cref="Random"/>). Train and held-out problems are disjoint: a problem's split is a fixed
/// hash of its canonical expression. Every text uses only <see cref="Alphabet"/>.
/// </summary>
public sealed class ArithmeticTaskGenerator
{
    /// <summary>The most steps a problem may have.</summary>
    public const int MaxStepsLimit = 8;

    /// <summary>
    /// Every character a generated problem, solution or prompt may contain (sorted by code point), for a
    /// character-level tokenizer.
    /// </summary>
    public const string Alphabet = "\n *+-./0123456789:=?ABDEHKLMQSTZ\\abcdefghiklmnopqrstuvwxy{}";

    private static readonly (string Name, bool She)[] People =
    [
        ("Tom", false), ("Ben", false), ("Sam", false), ("Max", false), ("Leo", false), ("Dan", false),
        ("Ann", true), ("Mia", true), ("Eva", true), ("Lily", true), ("Zoe", true), ("Kate", true),
    ];

    private static readonly string[] Items = ["apples", "pens", "books", "cards", "stickers", "marbles", "cookies", "coins", "shells", "balloons"];

    private static readonly string[] AddTemplates = ["{0} buys {1} more.", "{0} finds {1} more.", "{0} gets {1} more from a friend."];
    private static readonly string[] SubTemplates = ["{0} gives away {1}.", "{0} loses {1}.", "{0} sells {1}."];
    private static readonly string[] MulTemplates = ["{0} ends up with {1} times as many."];
    private static readonly string[] DivTemplates = ["{0} splits them into {1} equal groups and keeps one group."];

    private enum Op { Add, Sub, Mul, Div }

    private readonly ArithmeticTaskOptions _options;
    private ulong _state;

    public ArithmeticTaskGenerator(ulong seed, ArithmeticTaskOptions? options = null)
    {
        _options = options ?? new ArithmeticTaskOptions();
        _options.Validate();
        _state = seed;
    }

    public ArithmeticTaskOptions Options => _options;

    /// <summary>
    /// Whether <paramref name="response"/> shows the <see cref="DemonstrationFlaw.StaleBox"/> flaw: its last worked step
    /// "a&lt;op&gt;b=c." is followed by <c>\boxed{a}</c> with a ≠ c.
    /// </summary>
    public static bool HasStaleBox(string response)
    {
        var m = StaleBoxPattern.Match(response);
        return m.Success && m.Groups[1].Value == m.Groups[3].Value && m.Groups[1].Value != m.Groups[2].Value;
    }

    private static readonly System.Text.RegularExpressions.Regex StaleBoxPattern =
        new(@"(\d+)[-+*/]\d+=(\d+)\.\s*\\boxed\{(\d+)\}\s*$", System.Text.RegularExpressions.RegexOptions.CultureInvariant);

    /// <summary><c>"Q: &lt;problem&gt;\nA: "</c>, the prompt format of the demo model.</summary>
    public static string FormatPrompt(string problem) => $"Q: {problem}\nA: ";

    /// <summary>The split of a canonical expression: held out where its FNV-1a hash falls below <paramref name="heldOutFraction"/>.</summary>
    public static TaskSplit SplitOf(string expression, double heldOutFraction) => SplitOf(expression, heldOutFraction, 0);

    /// <summary>The split of a canonical expression: held out below <paramref name="heldOutFraction"/>, RL in the next <paramref name="rlFraction"/>.</summary>
    public static TaskSplit SplitOf(string expression, double heldOutFraction, double rlFraction)
    {
        var h = 14695981039346656037UL;
        foreach (var c in expression)
        {
            h ^= c;
            h *= 1099511628211UL;
        }
        // Mix the low-entropy FNV output (SplitMix64 finalizer) before taking a uniform fraction.
        h = SplitMix64.Mix(h);
        var u = (h >> 11) * (1.0 / (1UL << 53));
        return u < heldOutFraction ? TaskSplit.HeldOut : u < heldOutFraction + rlFraction ? TaskSplit.Rl : TaskSplit.Train;
    }

    /// <summary>The next problem of <paramref name="split"/>, with a step count drawn uniformly from the options' range.</summary>
    public ArithmeticTask Next(TaskSplit split = TaskSplit.Train) => Next(split, _options.MinSteps + NextInt(_options.MaxSteps - _options.MinSteps + 1));

    /// <summary>The next problem of <paramref name="split"/> with exactly <paramref name="steps"/> operations.</summary>
    public ArithmeticTask Next(TaskSplit split, int steps)
    {
        if (steps < 1 || steps > MaxStepsLimit) throw new BupoException($"steps must be in [1, {MaxStepsLimit}], got {steps}");
        const int maxAttempts = 100_000;
        for (var attempt = 0; attempt < maxAttempts; attempt++)
        {
            var task = Draw(steps);
            if (task.Split == split) return task;
        }
        throw new BupoException($"no {split} problem with {steps} steps found in {maxAttempts} draws; widen the operand range or change the held-out fraction");
    }

    /// <summary><paramref name="count"/> problems of <paramref name="split"/>.</summary>
    public IReadOnlyList<ArithmeticTask> Generate(int count, TaskSplit split = TaskSplit.Train)
    {
        if (count < 0) throw new BupoException($"count must be non-negative, got {count}");
        var tasks = new ArithmeticTask[count];
        for (var i = 0; i < count; i++) tasks[i] = Next(split);
        return tasks;
    }

    /// <summary>
    /// <paramref name="count"/> problems of <paramref name="split"/> whose canonical expressions are distinct, while the
    /// split has unused ones: the draws go on until <paramref name="staleDraws"/> in a row bring no new expression, and
    /// only then does a new round allow each expression once more. An evaluation set drawn with <see cref="Generate"/>
    /// repeats the few one-step expressions (16 of the default held-out split's 279 make half of its draws), so it
    /// would measure a handful of facts; this one measures the split.
    /// </summary>
    public IReadOnlyList<ArithmeticTask> GenerateDistinct(int count, TaskSplit split, int staleDraws = 4096)
    {
        if (count < 0) throw new BupoException($"count must be non-negative, got {count}");
        if (staleDraws < 1) throw new BupoException($"stale draws must be at least 1, got {staleDraws}");
        var tasks = new List<ArithmeticTask>(count);
        var round = new HashSet<string>(StringComparer.Ordinal);
        var stale = 0;
        while (tasks.Count < count)
        {
            var t = Next(split);
            if (round.Add(t.Expression))
            {
                tasks.Add(t);
                stale = 0;
            }
            else if (++stale >= staleDraws)
            {
                round.Clear(); // the split looks exhausted: the next round may reuse each expression once
                stale = 0;
            }
        }
        return tasks;
    }

    /// <summary>
    /// Writes <paramref name="tasks"/> as JSONL (<c>id</c>, <c>problem</c>, <c>answer</c>, <c>solution</c>, <c>steps</c>),
    /// a file <see cref="PromptDataset.Load"/> reads back.
    /// </summary>
    public static void WriteJsonl(string path, IEnumerable<ArithmeticTask> tasks, string idPrefix = "arith")
    {
        var sb = new StringBuilder();
        var i = 0;
        foreach (var t in tasks)
        {
            sb.Append(JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["id"] = $"{idPrefix}-{i++}",
                ["problem"] = t.Problem,
                ["answer"] = t.Answer.ToString(CultureInfo.InvariantCulture),
                ["solution"] = t.Solution,
                ["steps"] = t.Steps,
            })).Append('\n');
        }
        AtomicFile.Write(path, tmp => File.WriteAllText(tmp, sb.ToString(), new UTF8Encoding(false)));
    }

    private ArithmeticTask Draw(int steps)
    {
        var o = _options;
        var (name, she) = People[NextInt(People.Length)];
        var pronoun = she ? "She" : "He";
        var item = Items[NextInt(Items.Length)];
        var value = 2 + NextInt(o.MaxOperand - 1);

        var problem = new StringBuilder($"{name} has {value} {item}.");
        var solution = new StringBuilder();
        var expression = new StringBuilder(value.ToString(CultureInfo.InvariantCulture));
        var ops = new List<Op>(8);
        for (var s = 0; s < steps; s++)
        {
            // Everyday stories: adding and taking away three times as often as multiplying or dividing.
            ops.Clear();
            if (value < o.MaxValue) ops.AddRange([Op.Add, Op.Add, Op.Add]);
            if (value > 0) ops.AddRange([Op.Sub, Op.Sub, Op.Sub]);
            if (o.MaxFactor >= 2 && value > 0 && value * 2 <= o.MaxValue) ops.Add(Op.Mul);
            if (o.MaxFactor >= 2 && Divisors(value).Any()) ops.Add(Op.Div);
            var op = ops[NextInt(ops.Count)];
            int operand, next;
            char symbol;
            string template;
            switch (op)
            {
                case Op.Add:
                    operand = 1 + NextInt(Math.Min(o.MaxOperand, o.MaxValue - value));
                    next = value + operand;
                    symbol = '+';
                    template = AddTemplates[NextInt(AddTemplates.Length)];
                    break;
                case Op.Sub:
                    operand = 1 + NextInt(Math.Min(o.MaxOperand, value));
                    next = value - operand;
                    symbol = '-';
                    template = SubTemplates[NextInt(SubTemplates.Length)];
                    break;
                case Op.Mul:
                    operand = 2 + NextInt(Math.Min(o.MaxFactor, o.MaxValue / value) - 1);
                    next = value * operand;
                    symbol = '*';
                    template = MulTemplates[NextInt(MulTemplates.Length)];
                    break;
                default:
                    var divisors = Divisors(value).ToArray();
                    operand = divisors[NextInt(divisors.Length)];
                    next = value / operand;
                    symbol = '/';
                    template = DivTemplates[NextInt(DivTemplates.Length)];
                    break;
            }
            problem.Append(' ').Append(string.Format(CultureInfo.InvariantCulture, template, pronoun, operand));
            solution.Append(CultureInfo.InvariantCulture, $"{value}{symbol}{operand}={next}. ");
            expression.Append(symbol).Append(operand.ToString(CultureInfo.InvariantCulture));
            value = next;
        }
        problem.Append(CultureInfo.InvariantCulture, $" How many {item} does {name} have now?");
        solution.Append(CultureInfo.InvariantCulture, $"\\boxed{{{value}}}");
        var canonical = expression.ToString();
        return new ArithmeticTask(problem.ToString(), solution.ToString(), value, steps, canonical, SplitOf(canonical, o.HeldOutFraction, o.RlFraction));
    }

    /// <summary>Factors in [2, MaxFactor] that divide <paramref name="value"/> (a positive value only).</summary>
    private IEnumerable<int> Divisors(int value)
    {
        for (var k = 2; k <= _options.MaxFactor && k <= value; k++)
            if (value % k == 0) yield return k;
    }

    private int NextInt(int exclusiveMax)
    {
        // Lemire's multiply-shift on 32 random bits: bias below 2^-20 for the small ranges used here.
        var r = (uint)(NextUInt64() >> 32);
        return (int)(((ulong)r * (uint)exclusiveMax) >> 32);
    }

    private ulong NextUInt64() => SplitMix64.Next(ref _state);
}
