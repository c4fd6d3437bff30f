using BuPO.Hybrid.Data;
using BuPO.Hybrid.RL.Rewards;

namespace BuPO.Hybrid.RL.Tests;

public class RewardTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    private static PromptItem Item(string id, string? answer) => new(id, $"problem {id}", answer);

    private static RewardSample[] Batch(params (string Answer, string Response)[] xs) =>
        xs.Select((x, i) => new RewardSample(Item($"p{i}", x.Answer), x.Response)).ToArray();

    [Fact]
    public void MathReward_IsOneForCorrectBoxedAnswers()
    {
        var reward = new MathReward();
        var batch = Batch(("6", "3+5=8. 8-2=6. \\boxed{6}"), ("6", "\\boxed{7}"), ("0.5", "\\boxed{\\frac12}"), ("6", "6"));
        Assert.Equal([1.0, 0.0, 1.0, 0.0], reward.Score(batch));
        Assert.Equal("7", reward.Verify(batch)[1].Extracted);
    }

    [Fact]
    public void MathReward_NeedsAReferenceAnswer()
    {
        var e = Assert.Throws<BupoException>(() => new MathReward().Score([new RewardSample(new PromptItem("q", "x", null, Source: "p.txt", Line: 3), "\\boxed{1}")]));
        Assert.Contains("p.txt:3", e.Message);
        Assert.Contains("no reference answer", e.Message);
    }

    [Fact]
    public void DelegateReward_PerSampleAndPerBatch()
    {
        var bySample = new DelegateReward((p, r) => r.Length + (p.Answer == "x" ? 100 : 0));
        Assert.Equal([103.0, 2.0], bySample.Score(Batch(("x", "abc"), ("y", "ab"))));

        var byBatch = new DelegateReward(b => b.Select((_, i) => (double)i).ToArray(), "index");
        Assert.Equal("index", byBatch.Name);
        Assert.Equal([0.0, 1.0, 2.0], byBatch.Score(Batch(("a", ""), ("b", ""), ("c", ""))));

        var wrongCount = new DelegateReward(_ => [1.0], "short");
        Assert.Contains("returned 1 rewards for 2 samples", Assert.Throws<BupoException>(() => wrongCount.Score(Batch(("a", ""), ("b", "")))).Message);
        var nan = new DelegateReward((_, _) => double.NaN);
        Assert.Contains("finite", Assert.Throws<BupoException>(() => nan.Score(Batch(("a", "")))).Message);
    }

    [Fact]
    public void ExternalCommand_AwkScoresEachLine()
    {
        // Reward 1 where the response contains "good" (fflush: answer each line at once; mawk, Debian's default awk,
        // also needs -W interactive to stop it from waiting for a full input buffer).
        const string program = "'{ if (index($0, \"good\")) print \"{\\\"reward\\\": 1}\"; else print \"{\\\"reward\\\": 0.25}\"; fflush() }'";
        using var reward = new ExternalCommandReward(
            $"if awk -W version 2>&1 | grep -q mawk; then exec awk -W interactive {program}; else exec awk {program}; fi", Timeout);
        Assert.Equal([1.0, 0.25, 1.0], reward.Score(Batch(("1", "good"), ("1", "bad"), ("1", "very good"))));
        // The same process serves the next batch.
        Assert.Equal([0.25], reward.Score(Batch(("1", "meh"))));
        Assert.Empty(reward.Score([]));
    }

    [Fact]
    public void ExternalCommand_GetsPromptResponseAndAnswerAsJson()
    {
        // Echo the "answer" field back as the reward (a POSIX sh loop: each echo is written at once).
        const string cmd = "while IFS= read -r line; do a=$(printf '%s' \"$line\" | sed 's/.*\"answer\":\"\\([0-9.]*\\)\".*/\\1/'); echo \"{\\\"reward\\\": $a}\"; done";
        using var reward = new ExternalCommandReward(cmd, Timeout);
        var batch = new[]
        {
            new RewardSample(new PromptItem("a", "What is \"1+1\"?\nThink.", "2"), "It is \\boxed{2}\n"),
            new RewardSample(new PromptItem("b", "ünïcödé", "3.5"), "x"),
        };
        Assert.Equal([2.0, 3.5], reward.Score(batch));
    }

    [Fact]
    public void ExternalCommand_SeesValidJsonLines()
    {
        var dir = Directory.CreateTempSubdirectory("bupo-reward-");
        try
        {
            var log = Path.Combine(dir.FullName, "in.jsonl");
            using (var reward = new ExternalCommandReward($"while IFS= read -r line; do printf '%s\\n' \"$line\" >> '{log}'; echo '{{\"reward\": 1}}'; done", Timeout))
                reward.Score([new RewardSample(new PromptItem("id7", "multi\nline \"quoted\"", null), "résumé\t\\boxed{1}")]);
            var line = Assert.Single(File.ReadAllLines(log));
            using var doc = System.Text.Json.JsonDocument.Parse(line);
            Assert.Equal("id7", doc.RootElement.GetProperty("id").GetString());
            Assert.Equal("multi\nline \"quoted\"", doc.RootElement.GetProperty("prompt").GetString());
            Assert.Equal("résumé\t\\boxed{1}", doc.RootElement.GetProperty("response").GetString());
            Assert.Equal(System.Text.Json.JsonValueKind.Null, doc.RootElement.GetProperty("answer").ValueKind);
        }
        finally { dir.Delete(true); }
    }

    [Fact]
    public void ExternalCommand_BadJsonIsAClearError()
    {
        using var reward = new ExternalCommandReward("while read -r line; do echo 'reward=1'; done", Timeout);
        var e = Assert.Throws<BupoException>(() => reward.Score(Batch(("1", "x"))));
        Assert.Contains("output line 1 of 1", e.Message);
        Assert.Contains("reward=1", e.Message);
        Assert.DoesNotContain('\n', e.Message);

        using var missing = new ExternalCommandReward("while read -r line; do echo '{\"score\": 1}'; done", Timeout);
        Assert.Contains("{\"reward\": <finite number>}", Assert.Throws<BupoException>(() => missing.Score(Batch(("1", "x")))).Message);
    }

    [Fact]
    public void ExternalCommand_ThatFailsIsAClearError()
    {
        using var reward = new ExternalCommandReward("read -r line; echo 'boom: no model' >&2; exit 3", Timeout);
        var e = Assert.Throws<BupoException>(() => reward.Score(Batch(("1", "x"), ("1", "y"))));
        Assert.Contains("exited with code 3 after 0 of 2 rewards", e.Message);
        Assert.Contains("boom: no model", e.Message);

        using var notFound = new ExternalCommandReward("no-such-reward-command-xyz", Timeout);
        var e2 = Assert.Throws<BupoException>(() => notFound.Score(Batch(("1", "x"))));
        Assert.Contains("exited with code 127", e2.Message);
        Assert.Contains("no-such-reward-command-xyz", e2.Message);
    }

    [Fact]
    public void ExternalCommand_TooFewAnswersThenExit()
    {
        using var reward = new ExternalCommandReward("read -r line; echo '{\"reward\": 1}'", Timeout);
        var e = Assert.Throws<BupoException>(() => reward.Score(Batch(("1", "x"), ("1", "y"))));
        Assert.Contains("after 1 of 2 rewards", e.Message);
    }

    [Fact]
    public void ExternalCommand_SilentPastTheTimeout()
    {
        using var reward = new ExternalCommandReward("sleep 30", TimeSpan.FromMilliseconds(500));
        var started = DateTime.UtcNow;
        var e = Assert.Throws<BupoException>(() => reward.Score(Batch(("1", "x"))));
        Assert.Contains("gave 0 of 1 rewards within 0.5 s", e.Message);
        Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(10));
    }

    [Fact]
    public void ExternalCommand_EmptyCommandIsRejected() =>
        Assert.Throws<BupoException>(() => new ExternalCommandReward("  "));
}
