using System.Text.Json;
using System.Text.Json.Nodes;
using BuPO.Hybrid.Data;
using BuPO.Hybrid.RL.Training;
using BuPO.Hybrid.Tests.Support;
using BuPO.Hybrid.RL.Rewards;

namespace BuPO.Hybrid.RL.Tests;

/// <summary>
/// A run folder never says something false: the defects found by probing runs as a hostile user would (re-run steps,
/// corrupted checkpoints, two runs on one folder, resumes with other options, datasets without answers, failed starts,
/// kill -9 leftovers), each reproduced as it was found. Runs of 2-3 tiny steps on a random model of stories260K's shape.
/// </summary>
[Collection(TrainingRunCollection.Name)]
public sealed class RunIntegrityTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("bupo-integrity-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    private static readonly PromptItem[] Prompts =
        new[] { "Once upon a time", "One day", "Once upon a time, there was" }.Select((p, i) => new PromptItem($"s-{i}", p, null)).ToArray();

    private TrainOptions Options(string name, int steps) => new()
    {
        Model = TinyTrainingModels.StoriesShaped,
        Output = Path.Combine(_dir, name),
        Steps = steps,
        PromptsPerStep = 2,
        SamplesPerPrompt = 4,
        MaxResponseTokens = 12,
        Lr = 1e-3,
        Seed = 3,
        Threads = 1,
        TrainThreads = 1,
        PromptTemplate = "raw",
        CheckpointEvery = 1,
        KeepCheckpoints = 0,
        TensorBoard = false,
    };

    private static string Step(TrainOptions o, int step) => Path.Combine(o.Output, "checkpoints", TrainingCheckpoint.FolderName(step));

    private sealed class Messages(Action<StepMetrics>? onStep = null) : ITrainingObserver
    {
        public List<string> Lines { get; } = [];
        public void OnMessage(string message) { lock (Lines) Lines.Add(message); }
        public void OnStep(StepMetrics metrics, TrainOptions options) => onStep?.Invoke(metrics);
    }

    [Fact]
    public void AStepRunAgainReplacesItsOldCheckpoint()
    {
        // As found: resume from step 2 after step 3's model.bin was truncated; step 3 ran again and kept the truncated file.
        var o = Options("rerun", 3);
        TrainingRun.Run(o, TrainingRunTests.MentionsBoy, Prompts);
        var model3 = Path.Combine(Step(o, 3), "model.bin");
        var length = new FileInfo(model3).Length;
        using (var f = new FileStream(model3, FileMode.Open)) f.SetLength(length / 2);

        TrainingRun.Run(o with { Resume = Step(o, 2) }, TrainingRunTests.MentionsBoy, Prompts);
        Assert.Equal(length, new FileInfo(model3).Length);
        Assert.Equal(3, TrainingCheckpoint.Load(Step(o, 3)).Step); // its checksums hold
    }

    [Fact]
    public void ACorruptedCheckpointIsOneErrorNamingTheFile()
    {
        var o = Options("corrupt", 2);
        TrainingRun.Run(o, TrainingRunTests.MentionsBoy, Prompts);
        var optimizer = Path.Combine(Step(o, 1), "optimizer.bin");
        var bytes = File.ReadAllBytes(optimizer);
        bytes[^5] ^= 0x40; // one bit of a moment: loads without complaint unless checked
        File.WriteAllBytes(optimizer, bytes);

        var e = Assert.Throws<BupoException>(() => TrainingRun.Run(o with { Resume = Step(o, 1) }, TrainingRunTests.MentionsBoy, Prompts));
        Assert.Contains(optimizer, e.Message);
        Assert.Contains("corrupted", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void NonFiniteWeightsInACheckpointAreRefusedOnLoad()
    {
        // A checkpoint without checksums (as written before them) whose weights hold a NaN: it used to load and spread.
        var o = Options("nan", 1);
        TrainingRun.Run(o, TrainingRunTests.MentionsBoy, Prompts);
        var dir = Step(o, 1);
        var model = Path.Combine(dir, "model.bin");
        var bytes = File.ReadAllBytes(model);
        BitConverter.GetBytes(float.NaN).CopyTo(bytes, bytes.Length - 4); // the last float of the last tensor
        File.WriteAllBytes(model, bytes);
        var state = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, TrainingCheckpoint.StateFile)))!.AsObject();
        state.Remove("files");
        File.WriteAllText(Path.Combine(dir, TrainingCheckpoint.StateFile), state.ToJsonString());

        var e = Assert.Throws<BupoException>(() => TrainingRun.Run(o with { Resume = "latest", Steps = 2 }, TrainingRunTests.MentionsBoy, Prompts));
        Assert.Contains("non-finite", e.Message);
        Assert.Contains(model, e.Message);
    }

    [Fact]
    public async Task ASecondRunOnTheSameFolderIsRefused()
    {
        // As found: two runs on one --output both exited "done", leaving one's metrics and the other's checkpoints.
        var o = Options("twice", 2);
        using var atStep1 = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var first = Task.Run(() => TrainingRun.Run(o, TrainingRunTests.MentionsBoy, Prompts, new Messages(m =>
        {
            if (m.Step != 1) return;
            atStep1.Set();
            release.Wait(TimeSpan.FromMinutes(2)); // the first run holds still (no tensor work) while the second starts
        })));
        Assert.True(atStep1.Wait(TimeSpan.FromMinutes(2)), "the first run did not reach step 1");
        try
        {
            var e = Assert.Throws<BupoException>(() => TrainingRun.Run(o, TrainingRunTests.MentionsBoy, Prompts));
            Assert.Contains("another run is using this folder", e.Message);
            Assert.Contains($"pid {Environment.ProcessId}", e.Message);
        }
        finally
        {
            release.Set();
        }
        Assert.Equal(2, (await first).LastStep);
    }

    [Fact]
    public void ALockLeftByADeadRunIsTakenOverWithANote()
    {
        var o = Options("stale", 1);
        Directory.CreateDirectory(o.Output);
        File.WriteAllText(Path.Combine(o.Output, RunFolderLock.FileName), "pid 999999 on elsewhere, started 2026-01-01T00:00:00Z\n");
        var messages = new Messages();
        TrainingRun.Run(o, TrainingRunTests.MentionsBoy, Prompts, messages);
        Assert.Contains(messages.Lines, l => l.Contains("took over the lock") && l.Contains("pid 999999"));
        Assert.Equal(0, new FileInfo(Path.Combine(o.Output, RunFolderLock.FileName)).Length); // released cleanly: empty
    }

    [Fact]
    public void ResumeRefusesChangedSettingsAndRecordsTheAllowedOnes()
    {
        // As found: --resume latest --seed 99 --samples-per-prompt 2 ran with them while the checkpoint said seed 3, 8 samples.
        var o = Options("settings", 2);
        TrainingRun.Run(o, TrainingRunTests.MentionsBoy, Prompts);
        var e = Assert.Throws<BupoException>(() => TrainingRun.Run(o with { Resume = "latest", Steps = 3, Seed = 99 }, TrainingRunTests.MentionsBoy, Prompts));
        Assert.Contains("--seed is 99 here but 3", e.Message);
        e = Assert.Throws<BupoException>(() => TrainingRun.Run(o with { Resume = "latest", Steps = 3, Lr = 0.01 }, TrainingRunTests.MentionsBoy, Prompts));
        Assert.Contains("--lr", e.Message);
        Assert.False(Directory.Exists(Step(o, 3)));

        // Steps and thread counts may change; config.json records the resume and what changed.
        TrainingRun.Run(o with { Resume = "latest", Steps = 3, TrainThreads = 2 }, TrainingRunTests.MentionsBoy, Prompts);
        using var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(o.Output, "config.json")));
        Assert.Equal(3, config.RootElement.GetProperty("steps").GetInt32());
        var resume = Assert.Single(config.RootElement.GetProperty(TrainConfig.ResumesKey).EnumerateArray());
        Assert.Equal(2, resume.GetProperty("step").GetInt32());
        var changed = resume.GetProperty("changed");
        Assert.Equal(2, changed.GetProperty("steps").GetProperty("from").GetInt32());
        Assert.Equal(3, changed.GetProperty("steps").GetProperty("to").GetInt32());
        Assert.Equal(2, changed.GetProperty("train-threads").GetProperty("to").GetInt32());
        Assert.False(changed.TryGetProperty("seed", out _));
        // The file still reads back as a --config.
        Assert.Equal(3, TrainConfig.ApplyFile(new TrainOptions(), Path.Combine(o.Output, "config.json")).Steps);
    }

    [Fact]
    public void ADatasetLineWithoutAnAnswerIsRefusedBeforeAnythingIsWritten()
    {
        // As found: with --reward math a JSONL line without its answer failed the run at the step that first sampled it.
        var data = Path.Combine(_dir, "partial.jsonl");
        File.WriteAllText(data, "{\"problem\": \"Once upon a time\", \"answer\": \"1\"}\n{\"problem\": \"One day\"}\n");
        var o = Options("noanswer", 2) with { Dataset = data };
        var e = Assert.Throws<BupoException>(() => TrainingRun.Run(o, new MathReward()));
        Assert.Contains($"{data}:2", e.Message);
        Assert.Contains("no reference answer", e.Message);
        Assert.False(Directory.Exists(o.Output));
    }

    [Fact]
    public void AFailedStartLeavesTheFolderAsItWas()
    {
        // As found: a failed train left config.json and empty metrics files behind.
        var o = Options("failed", 1);
        var services = new TrainingServices { SamplerFactory = (_, _) => throw new BupoException("no sampler today") };
        Assert.Throws<BupoException>(() => TrainingRun.Run(o, TrainingRunTests.MentionsBoy, Prompts, services: services));
        Assert.False(Directory.Exists(o.Output));
        // A folder that existed keeps exactly what it had.
        Directory.CreateDirectory(o.Output);
        File.WriteAllText(Path.Combine(o.Output, "notes.txt"), "mine");
        Assert.Throws<BupoException>(() => TrainingRun.Run(o, TrainingRunTests.MentionsBoy, Prompts, services: services));
        Assert.Equal(["notes.txt"], Directory.GetFileSystemEntries(o.Output).Select(Path.GetFileName));
    }

    [Fact]
    public void StartUpRemovesWhatKilledRunsLeft()
    {
        // As found: kill -9 leftovers (.step-N.tmp-*, sampler *.tmp-*, old sampler files after a resume) stayed forever.
        var o = Options("leftovers", 2);
        TrainingRun.Run(o, TrainingRunTests.MentionsBoy, Prompts);
        var checkpoints = Path.Combine(o.Output, "checkpoints");
        var sampler = Path.Combine(o.Output, "sampler");
        var deadCheckpoint = Directory.CreateDirectory(Path.Combine(checkpoints, ".step-000003.tmp-0123abcd")).FullName;
        File.WriteAllText(Path.Combine(deadCheckpoint, "model.bin"), "half");
        var deadExport = Path.Combine(sampler, "step-000003.Q8_0.gguf.tmp-1a2b3c4d");
        File.WriteAllText(deadExport, "half");
        // A discarded future: a longer earlier run's step 4, which a resume from step 1 replaces.
        var future = Path.Combine(checkpoints, TrainingCheckpoint.FolderName(4));
        Directory.CreateDirectory(future);
        foreach (var f in Directory.GetFiles(Step(o, 2))) File.Copy(f, Path.Combine(future, Path.GetFileName(f)));
        File.Copy(Directory.GetFiles(sampler, "step-000002.*").Single(), Path.Combine(sampler, "step-000004.Q8_0.gguf"));

        var messages = new Messages();
        TrainingRun.Run(o with { Resume = Step(o, 1), Steps = 2 }, TrainingRunTests.MentionsBoy, Prompts, messages);
        Assert.False(Directory.Exists(deadCheckpoint));
        Assert.False(File.Exists(deadExport));
        Assert.False(Directory.Exists(future));
        Assert.EndsWith(TrainingCheckpoint.FolderName(2), TrainingCheckpoint.Latest(checkpoints));
        // Step 2 ran again and re-exported: what is in sampler/ is this run's alone.
        Assert.Equal(["step-000002.Q8_0.gguf"], Directory.GetFiles(sampler).Select(Path.GetFileName));
        Assert.Contains(messages.Lines, l => l.StartsWith("removed "));
    }

    [Fact]
    public void ACheckpointFromBeforeTheSamplerSleptResumesAndTheSleepMayChange()
    {
        // Checkpoints written before --sampler-sleep / --offload-sampler existed lack the keys, which counts as a change.
        var o = new TrainOptions { Model = "m.gguf", Dataset = "d.jsonl" };
        var old = JsonNode.Parse(TrainConfig.ToJson(o))!.AsObject();
        Assert.True(old.Remove("sampler-sleep") && old.Remove("offload-sampler"));
        var changes = TrainingRun.SettingChanges(old, o with { OffloadSampler = true });
        Assert.Equal(["offload-sampler", "sampler-sleep"], changes.Select(c => c.Name).Order(StringComparer.Ordinal));
        Assert.All(changes, c => Assert.Contains(c.Name, TrainingRun.MayChangeOnResume));
    }

    [Fact]
    public void ACheckpointWithAChoiceSpeltAnotherWayResumes()
    {
        // Checkpoints store what was written: "bfloat16" or "BF16" for --dtype, "Token-Mean" for --loss-agg (strings before
        // these settings were enums). They are the same settings as the canonical names, and a real change still counts.
        var o = new TrainOptions { Model = "m.gguf", Dataset = "d.jsonl", Dtype = BuPO.Hybrid.Model.TrainPrecision.BFloat16Mixed };
        var old = JsonNode.Parse(TrainConfig.ToJson(o))!.AsObject();
        old["dtype"] = "bfloat16";
        old["loss-agg"] = "Token-Mean";
        old["bupo-layer"] = null;
        Assert.Empty(TrainingRun.SettingChanges(old, o));
        var changes = TrainingRun.SettingChanges(old, o with { Dtype = BuPO.Hybrid.Model.TrainPrecision.BFloat16Pure });
        Assert.Equal(("dtype", "\"bf16\"", "\"bf16-pure\""), Assert.Single(changes));
        // The resume's start: the checkpoint's settings read back.
        Assert.Equal(o.Dtype, TrainConfig.ApplyJson(new TrainOptions(), old.ToJsonString()).Dtype);
    }
}
