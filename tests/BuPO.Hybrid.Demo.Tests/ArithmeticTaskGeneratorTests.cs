using System.Text.RegularExpressions;
using BuPO.Hybrid.Data;
using BuPO.Hybrid.Demo;
using BuPO.Hybrid.RL.Rewards;

namespace BuPO.Hybrid.Demo.Tests;

public class ArithmeticTaskGeneratorTests
{
    [Fact]
    public void SameSeed_SameTasks_OtherSeed_OtherTasks()
    {
        var a = new ArithmeticTaskGenerator(42).Generate(200);
        var b = new ArithmeticTaskGenerator(42).Generate(200);
        var c = new ArithmeticTaskGenerator(43).Generate(200);
        Assert.Equal(a, b);
        Assert.NotEqual(a.Select(t => t.Problem), c.Select(t => t.Problem));
    }

    [Fact]
    public void FirstTasksOfSeed1_ArePinned()
    {
        // Pins the generator across machines and runtimes (own SplitMix64, no System.Random).
        var t = new ArithmeticTaskGenerator(1).Next(TaskSplit.Train, 2);
        Assert.Equal("Ann has 9 coins. She sells 4. She ends up with 3 times as many. How many coins does Ann have now?", t.Problem);
        Assert.Equal("9-4=5. 5*3=15. \\boxed{15}", t.Solution);
        Assert.Equal("9-4*3", t.Expression);
        Assert.Equal(15, t.Answer);
        var first = new ArithmeticTaskGenerator(1).Generate(2);
        Assert.Equal("Eva has 5 balloons. She sells 4. She sells 1. She finds 6 more. How many balloons does Eva have now?", first[0].Problem);
        Assert.Equal("5-4=1. 1-1=0. 0+6=6. \\boxed{6}", first[0].Solution);
        Assert.Equal("Q: Dan has 7 pens. He sells 5. He finds 1 more. He buys 3 more. How many pens does Dan have now?\nA: 7-5=2. 2+1=3. 3+3=6. \\boxed{6}", first[1].Text);
    }

    [Fact]
    public void Example_FormatsAsDocumented()
    {
        var tasks = new ArithmeticTaskGenerator(5).Generate(300);
        foreach (var t in tasks)
        {
            Assert.StartsWith("Q: ", t.Prompt);
            Assert.EndsWith("\nA: ", t.Prompt);
            Assert.Equal($"Q: {t.Problem}\nA: ", t.Prompt);
            Assert.Equal(t.Prompt + t.Solution, t.Text);
            Assert.EndsWith($"\\boxed{{{t.Answer}}}", t.Solution);
            Assert.Equal(t.Steps, Regex.Matches(t.Solution, "=").Count);
            Assert.Equal(t.Steps + 2, t.Problem.Count(ch => ch is '.' or '?')); // start, one sentence per step, question
        }
    }

    [Fact]
    public void SolutionSteps_AreCorrectArithmetic_AndAmountsStayInBounds()
    {
        var options = new ArithmeticTaskOptions { MaxOperand = 20, MaxValue = 200, MaxFactor = 4 };
        var ops = new HashSet<char>();
        foreach (var t in new ArithmeticTaskGenerator(9, options).Generate(2000))
        {
            var value = int.Parse(Regex.Match(t.Expression, @"^\d+").Value);
            Assert.Equal(value, int.Parse(Regex.Match(t.Problem, @"has (\d+) ").Groups[1].Value));
            foreach (Match m in Regex.Matches(t.Solution, @"(\d+)([-+*/])(\d+)=(\d+)\."))
            {
                int x = int.Parse(m.Groups[1].Value), y = int.Parse(m.Groups[3].Value), z = int.Parse(m.Groups[4].Value);
                Assert.Equal(value, x);
                var op = m.Groups[2].Value[0];
                ops.Add(op);
                Assert.Equal(op switch { '+' => x + y, '-' => x - y, '*' => x * y, _ => x / y }, z);
                if (op == '/') Assert.Equal(0, x % y);
                if (op is '+' or '-') Assert.InRange(y, 1, options.MaxOperand);
                else Assert.InRange(y, 2, options.MaxFactor);
                Assert.InRange(z, 0, options.MaxValue);
                value = z;
            }
            Assert.Equal(value, t.Answer);
            Assert.InRange(t.Answer, 0, options.MaxValue);
            Assert.InRange(t.Steps, 1, 4);
        }
        Assert.Equal(new HashSet<char>("+-*/"), ops);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void Difficulty_IsTheStepCount(int steps)
    {
        var gen = new ArithmeticTaskGenerator(3, new ArithmeticTaskOptions { MinSteps = steps, MaxSteps = steps });
        Assert.All(gen.Generate(100), t => Assert.Equal(steps, t.Steps));
        Assert.All(gen.Generate(100, TaskSplit.HeldOut), t => Assert.Equal(steps, t.Steps));
        var all = new ArithmeticTaskGenerator(3).Generate(1000);
        Assert.Equal([1, 2, 3, 4], all.Select(t => t.Steps).Distinct().Order());
    }

    [Fact]
    public void TrainAndHeldOut_AreDisjoint()
    {
        foreach (var options in new[]
                 {
                     new ArithmeticTaskOptions(),
                     new ArithmeticTaskOptions { MinSteps = 1, MaxSteps = 1 },  // small space: many repeats
                     new ArithmeticTaskOptions { MaxOperand = 50, MaxValue = 500, HeldOutFraction = 0.3 },
                 })
        {
            var gen = new ArithmeticTaskGenerator(11, options);
            var train = gen.Generate(3000);
            var heldOut = gen.Generate(1000, TaskSplit.HeldOut);
            Assert.All(train, t => Assert.Equal(TaskSplit.Train, t.Split));
            Assert.All(heldOut, t => Assert.Equal(TaskSplit.HeldOut, t.Split));
            Assert.Empty(train.Select(t => t.Expression).Intersect(heldOut.Select(t => t.Expression)));
            Assert.Empty(train.Select(t => t.Problem).Intersect(heldOut.Select(t => t.Problem)));
            Assert.All(heldOut, t => Assert.Equal(TaskSplit.HeldOut, ArithmeticTaskGenerator.SplitOf(t.Expression, options.HeldOutFraction)));
        }
    }

    [Fact]
    public void RlSplit_IsDisjointFromSftAndHeldOut_AndKeepsTheHeldOutSplit()
    {
        var options = new ArithmeticTaskOptions { MaxSteps = 2, RlFraction = 0.3 };
        var gen = new ArithmeticTaskGenerator(5, options);
        var sft = gen.Generate(3000).Select(t => t.Expression).ToHashSet();
        var rl = gen.Generate(1000, TaskSplit.Rl);
        var heldOut = gen.Generate(1000, TaskSplit.HeldOut).Select(t => t.Expression).ToHashSet();
        Assert.All(rl, t => Assert.Equal(TaskSplit.Rl, t.Split));
        Assert.DoesNotContain(rl, t => sft.Contains(t.Expression) || heldOut.Contains(t.Expression));
        Assert.DoesNotContain(sft, heldOut.Contains);
        // The held-out split is the same set with or without an RL split (the RL share is cut from the SFT side).
        Assert.All(heldOut, e => Assert.Equal(TaskSplit.HeldOut, ArithmeticTaskGenerator.SplitOf(e, options.HeldOutFraction)));
        var expressions = Enumerable.Range(0, 20000).Select(i => $"{i}+{i % 7}").ToArray();
        var share = expressions.Count(e => ArithmeticTaskGenerator.SplitOf(e, 0.1, 0.3) == TaskSplit.Rl) / (double)expressions.Length;
        Assert.InRange(share, 0.29, 0.31);
        Assert.Throws<BupoException>(() => new ArithmeticTaskGenerator(1, new ArithmeticTaskOptions { HeldOutFraction = 0.5, RlFraction = 0.5 }));
    }

    [Fact]
    public void HeldOutShare_IsNearTheFraction()
    {
        // 20,000 distinct expressions: the hash puts about the asked share in the held-out split.
        var expressions = Enumerable.Range(0, 20000).Select(i => $"{i}+{i % 7}").ToArray();
        foreach (var fraction in new[] { 0.1, 0.3 })
        {
            var heldOut = expressions.Count(e => ArithmeticTaskGenerator.SplitOf(e, fraction) == TaskSplit.HeldOut);
            Assert.InRange(heldOut / (double)expressions.Length, fraction - 0.01, fraction + 0.01);
        }
    }

    [Fact]
    public void EveryText_UsesOnlyTheAlphabet_AndTheAlphabetIsTight()
    {
        Assert.Equal(ArithmeticTaskGenerator.Alphabet.Length, ArithmeticTaskGenerator.Alphabet.Distinct().Count());
        Assert.Equal(ArithmeticTaskGenerator.Alphabet, new string(ArithmeticTaskGenerator.Alphabet.Order().ToArray()));
        var alphabet = new HashSet<char>(ArithmeticTaskGenerator.Alphabet);
        var seen = new HashSet<char>();
        var gen = new ArithmeticTaskGenerator(77, new ArithmeticTaskOptions { MaxOperand = 30, MaxValue = 300 });
        foreach (var t in gen.Generate(3000).Concat(gen.Generate(500, TaskSplit.HeldOut)))
            foreach (var ch in t.Text)
            {
                Assert.True(alphabet.Contains(ch), $"'{ch}' in {t.Text}");
                seen.Add(ch);
            }
        Assert.Equal(alphabet.Order(), seen.Order());
    }

    [Fact]
    public void Verifier_MarksEveryGeneratedSolutionCorrect()
    {
        var verifier = new MathAnswerVerifier();
        var gen = new ArithmeticTaskGenerator(2024, new ArithmeticTaskOptions { MaxOperand = 40, MaxValue = 400 });
        var tasks = gen.Generate(1000).Concat(gen.Generate(200, TaskSplit.HeldOut)).ToList();
        foreach (var t in tasks)
        {
            var r = verifier.Verify(t.Solution, t.Answer.ToString());
            Assert.True(r.Correct, $"{t.Solution} vs {t.Answer}: {r.Normalized}");
            Assert.False(verifier.Verify(t.Solution, (t.Answer + 1).ToString()).Correct);
        }
        var reward = new MathReward(verifier);
        var batch = tasks.Take(100).Select((t, i) => new RewardSample(t.ToPromptItem($"d{i}"), t.Solution)).ToArray();
        Assert.All(reward.Score(batch), r => Assert.Equal(1.0, r));
    }

    [Fact]
    public void Jsonl_RoundTripsThroughThePromptDatasetLoader()
    {
        var dir = Directory.CreateTempSubdirectory("bupo-demo-");
        try
        {
            var tasks = new ArithmeticTaskGenerator(8).Generate(50, TaskSplit.HeldOut);
            var path = Path.Combine(dir.FullName, "held-out.jsonl");
            ArithmeticTaskGenerator.WriteJsonl(path, tasks, "ho");
            var items = PromptDataset.Load(path);
            Assert.Equal(50, items.Count);
            Assert.Equal("ho-0", items[0].Id);
            Assert.Equal(tasks.Select(t => t.Problem), items.Select(i => i.Problem));
            Assert.Equal(tasks.Select(t => t.Answer.ToString()), items.Select(i => i.Answer));
            Assert.Equal(tasks.Select(t => t.Solution), items.Select(i => i.Solution));
            Assert.Equal(tasks[3].ToPromptItem("ho-3") with { Source = path, Line = 4 }, items[3]);
        }
        finally { dir.Delete(true); }
    }

    [Fact]
    public void GenerateDistinct_RepeatsNoExpression_WhileTheSplitHasUnusedOnes()
    {
        // Two-step problems of the default options: the held-out split has a few hundred canonical expressions, of which
        // a plain draw repeats the one-step ones many times over.
        var options = new ArithmeticTaskOptions { MaxSteps = 2 };
        var plain = new ArithmeticTaskGenerator(3, options).Generate(200, TaskSplit.HeldOut);
        Assert.True(plain.Select(t => t.Expression).Distinct().Count() < 150, "the plain draw was expected to repeat expressions");
        var distinct = new ArithmeticTaskGenerator(3, options).GenerateDistinct(200, TaskSplit.HeldOut);
        Assert.Equal(200, distinct.Count);
        Assert.Equal(200, distinct.Select(t => t.Expression).Distinct().Count());
        Assert.All(distinct, t => Assert.Equal(TaskSplit.HeldOut, t.Split));
        Assert.Equal(distinct, new ArithmeticTaskGenerator(3, options).GenerateDistinct(200, TaskSplit.HeldOut));
    }

    [Fact]
    public void GenerateDistinct_StartsANewRound_WhenTheSplitIsExhausted()
    {
        // One-step problems from 2..3 with operands up to 2: a split of only a few expressions.
        var options = new ArithmeticTaskOptions { MaxSteps = 1, MaxOperand = 3, MaxFactor = 1 };
        var tasks = new ArithmeticTaskGenerator(4, options).GenerateDistinct(40, TaskSplit.Train, staleDraws: 500);
        Assert.Equal(40, tasks.Count);
        var counts = tasks.GroupBy(t => t.Expression).Select(g => g.Count()).ToList();
        // Every round uses each expression once, so no expression is more than one use ahead of another.
        Assert.True(counts.Max() - counts.Min() <= 1, string.Join(",", counts));
        Assert.True(counts.Count < 40);
    }

    [Theory]
    [InlineData("3+5=8. 8-2=6. \\boxed{6}", 6, "3+5=8. \\boxed{8}")]
    [InlineData("3+5=8. \\boxed{8}", 8, "\\boxed{3}")]
    [InlineData("9-4=5. 5*3=15. 15/5=3. \\boxed{3}", 3, "9-4=5. 5*3=15. \\boxed{15}")]
    public void WithoutLastStep_BoxesTheAmountBeforeTheLastOperation(string solution, int answer, string flawed)
    {
        var t = new ArithmeticTask("p", solution, answer, 2, "e", TaskSplit.Train);
        var w = t.WithoutLastStep();
        Assert.Equal(flawed, w.Solution);
        Assert.Equal(answer, w.Answer);
        var verifier = new MathAnswerVerifier();
        Assert.True(verifier.Verify(t.Solution, answer.ToString()).Correct);
        Assert.False(verifier.Verify(w.Solution, answer.ToString()).Correct);
    }

    [Fact]
    public void WithoutLastStep_OfEveryGeneratedTask_IsItsSolutionMinusOneStep()
    {
        foreach (var t in new ArithmeticTaskGenerator(11).Generate(500))
        {
            var w = t.WithoutLastStep().Solution;
            Assert.Equal(t.Steps - 1, Regex.Matches(w, "=").Count);
            var lines = t.Solution.Split(". ");
            var before = t.Steps == 1 ? Regex.Match(t.Expression, @"^\d+").Value : lines[^3].Split('=')[1];
            Assert.EndsWith($"\\boxed{{{before}}}", w);
            Assert.StartsWith(string.Concat(lines[..^2].Select(l => l + ". ")), t.Solution);
        }
    }

    [Theory]
    [InlineData("3+5=8. 8-2=6. \\boxed{6}", 6, "3+5=8. 8-2=6. \\boxed{8}")]
    [InlineData("3+5=8. \\boxed{8}", 8, "3+5=8. \\boxed{3}")]
    [InlineData("9-4=5. 5*3=15. 15/5=3. \\boxed{3}", 3, "9-4=5. 5*3=15. 15/5=3. \\boxed{15}")]
    public void WithStaleBox_KeepsEveryStep_AndBoxesTheAmountBeforeTheLastOperation(string solution, int answer, string flawed)
    {
        var t = new ArithmeticTask("p", solution, answer, 2, "e", TaskSplit.Train);
        var w = t.With(DemonstrationFlaw.StaleBox);
        Assert.Equal(flawed, w.Solution);
        Assert.Equal(answer, w.Answer);
        Assert.False(new MathAnswerVerifier().Verify(w.Solution, answer.ToString()).Correct);
        Assert.True(ArithmeticTaskGenerator.HasStaleBox(w.Solution));
        Assert.False(ArithmeticTaskGenerator.HasStaleBox(t.Solution));
        Assert.Same(t, t.With(DemonstrationFlaw.None));
        Assert.Equal(t.WithoutLastStep(), t.With(DemonstrationFlaw.DropLastStep));
    }

    [Theory]
    [InlineData("3+5=8. \\boxed{8}", false)]
    [InlineData("3+5=8. \\boxed{3}", true)]
    [InlineData("3+5=8. \\boxed{5}", false)]   // a wrong box, but not the stale amount
    [InlineData("5-0=5. \\boxed{5}", false)]   // the amount did not change: the box is right
    [InlineData("\\boxed{3}", false)]          // no worked step: stopped short, not stale
    [InlineData("3+5=8. 8-2=6. \\boxed{8}", true)]
    public void HasStaleBox_IsTheBoxOfTheAmountBeforeTheLastWorkedStep(string response, bool stale) =>
        Assert.Equal(stale, ArithmeticTaskGenerator.HasStaleBox(response));

    [Theory]
    [InlineData(DemonstrationFlaw.DropLastStep)]
    [InlineData(DemonstrationFlaw.StaleBox)]
    public void SftDemonstrations_CarryTheFlawInTheShareAsked_AndKeepTheProblems(DemonstrationFlaw flaw)
    {
        var tasks = new ArithmeticTaskGenerator(12).Generate(4000);
        Assert.Same(tasks, SftTrainer.Demonstrations(tasks, 1, new SftOptions { Seed = 5 }));
        Assert.Same(tasks, SftTrainer.Demonstrations(tasks, 1, new SftOptions { Seed = 5, FlawShare = 0.25 }));
        var options = new SftOptions { Seed = 5, Flaw = flaw, FlawShare = 0.25 };
        var flawed = SftTrainer.Demonstrations(tasks, 1, options);
        Assert.Equal(tasks.Select(t => t.Problem), flawed.Select(t => t.Problem));
        var changed = tasks.Zip(flawed).Count(p => p.Second.Solution != p.First.Solution);
        Assert.InRange(changed / 4000.0, 0.22, 0.28);
        Assert.All(tasks.Zip(flawed), p => Assert.True(p.Second.Solution == p.First.Solution || p.Second.Solution == p.First.With(flaw).Solution));
        // Another step draws other rows.
        var other = SftTrainer.Demonstrations(tasks, 2, options);
        Assert.NotEqual(flawed.Select(t => t.Solution), other.Select(t => t.Solution));
    }

    [Theory]
    [InlineData(0, 4, 9, 99, 0.1)]
    [InlineData(3, 2, 9, 99, 0.1)]
    [InlineData(1, 9, 9, 99, 0.1)]
    [InlineData(1, 4, 1, 99, 0.1)]
    [InlineData(1, 4, 50, 20, 0.1)]
    [InlineData(1, 4, 9, 99, 0.0)]
    [InlineData(1, 4, 9, 99, 1.0)]
    public void BadOptions_AreClearErrors(int minSteps, int maxSteps, int maxOperand, int maxValue, double heldOut)
    {
        var options = new ArithmeticTaskOptions { MinSteps = minSteps, MaxSteps = maxSteps, MaxOperand = maxOperand, MaxValue = maxValue, HeldOutFraction = heldOut };
        Assert.Throws<BupoException>(() => new ArithmeticTaskGenerator(1, options));
    }
}
