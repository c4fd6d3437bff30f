using System.Globalization;

namespace BuPO.Hybrid.Demo;

/// <summary>The sizes of one demo run (default or --quick).</summary>
public sealed record DemoProfile
{
    public required string Name { get; init; }
    public required DemoModelSpec Model { get; init; }
    public required ArithmeticTaskOptions Tasks { get; init; }
    public int SftSteps { get; init; }
    public int SftBatch { get; init; }
    public double SftLr { get; init; }
    /// <summary>The flaw of some SFT demonstrations (<see cref="SftOptions.Flaw"/>).</summary>
    public DemonstrationFlaw SftFlaw { get; init; }
    /// <summary>Share of SFT demonstrations with <see cref="SftFlaw"/> (<see cref="SftOptions.FlawShare"/>).</summary>
    public double SftFlawShare { get; init; }
    /// <summary>Whether some SFT demonstrations carry <see cref="SftFlaw"/>.</summary>
    public bool HasSftFlaw => SftFlawShare > 0 && SftFlaw != DemonstrationFlaw.None;
    public int AnalysisPrompts { get; init; }
    public int RlSteps { get; init; }
    public int RlPromptsPerStep { get; init; }
    public int RlSamplesPerPrompt { get; init; }
    public double RlLr { get; init; }
    /// <summary>Prompts per PPO mini-batch (one optimizer step each).</summary>
    public int RlMiniBatchPrompts { get; init; }
    /// <summary>Passes over each rollout batch.</summary>
    public int RlPpoEpochs { get; init; } = 1;
    public int BupoSteps { get; init; }
    /// <summary>Size of the RL prompt pool (distinct problems of the RL split while it has them), walked through in seeded epochs.</summary>
    public int RlTrainPrompts { get; init; }
    public int EvalProblems { get; init; }
    public int EvalK { get; init; }
    /// <summary>Held-out problems (the first ones) and samples of the layer-k policy evaluation (torch sampler, costly).</summary>
    public int LayerEvalProblems { get; init; }
    public int LayerEvalK { get; init; }
    public int MaxResponseTokens { get; init; }

    public static DemoProfile Default => new()
    {
        Name = "default",
        Model = new DemoModelSpec { Layers = 6, Embedding = 64, HeadDim = 16, FeedForward = 192, ContextLength = 256 },
        Tasks = new ArithmeticTaskOptions { MaxSteps = 2, RlFraction = 0.3 },
        SftSteps = 500, SftBatch = 32, SftLr = 3e-3, SftFlaw = DemonstrationFlaw.StaleBox, SftFlawShare = 0.25,
        AnalysisPrompts = 32,
        RlSteps = 30, RlPromptsPerStep = 32, RlSamplesPerPrompt = 8, RlLr = 1e-4, RlMiniBatchPrompts = 8, BupoSteps = 5, RlTrainPrompts = 640,
        EvalProblems = 200, EvalK = 8, MaxResponseTokens = 40, LayerEvalProblems = 48, LayerEvalK = 4,
    };

    /// <summary>This profile with the command line's overrides applied (each checked).</summary>
    public DemoProfile With(DemoSettings a)
    {
        static int Positive(int? v, int fallback, string option, int min = 1) =>
            v is { } x ? (x >= min ? x : throw new BupoException($"{option} must be >= {min}, got {x}")) : fallback;
        var p = this with
        {
            RlSteps = Positive(a.RlSteps, RlSteps, "--rl-steps"),
            RlSamplesPerPrompt = Positive(a.GroupSize, RlSamplesPerPrompt, "--group-size", 2),
            RlPromptsPerStep = Positive(a.PromptsPerStep, RlPromptsPerStep, "--prompts-per-step"),
            BupoSteps = Positive(a.BupoSteps, BupoSteps, "--bupo-steps", 0),
            EvalProblems = Positive(a.EvalProblems, EvalProblems, "--eval-problems"),
            RlMiniBatchPrompts = Positive(a.MiniBatchPrompts, RlMiniBatchPrompts, "--mini-batch-prompts"),
            RlPpoEpochs = Positive(a.PpoEpochs, RlPpoEpochs, "--ppo-epochs"),
            SftSteps = Positive(a.SftSteps, SftSteps, "--sft-steps"),
            SftFlawShare = a.FlawShare is { } d ? (d >= 0 && d < 1 ? d : throw new BupoException($"--sft-flaw-share must be in [0, 1), got {d}")) : SftFlawShare,
            SftFlaw = a.Flaw ?? SftFlaw,
            Tasks = a.TaskSteps is { } ts
                ? (ts is >= 1 and <= ArithmeticTaskGenerator.MaxStepsLimit ? Tasks with { MaxSteps = ts, MinSteps = Math.Min(Tasks.MinSteps, ts) } : throw new BupoException($"--task-steps must be in [1, {ArithmeticTaskGenerator.MaxStepsLimit}], got {ts}"))
                : Tasks,
            // A step's line ("27-9=18. ") is at most 9 characters and the box 10: room for the longest solution.
            MaxResponseTokens = a.TaskSteps is { } steps ? 16 + 12 * steps : MaxResponseTokens,
            RlLr = a.RlLr is { } lr ? (lr > 0 && double.IsFinite(lr) ? lr : throw new BupoException($"--rl-lr must be a positive number, got {lr}")) : RlLr,
        };
        if (a.MiniBatchPrompts is null) p = p with { RlMiniBatchPrompts = Math.Min(p.RlMiniBatchPrompts, p.RlPromptsPerStep) }; // fewer prompts: fewer mini-batches
        if (p.RlMiniBatchPrompts > p.RlPromptsPerStep) throw new BupoException($"--mini-batch-prompts ({p.RlMiniBatchPrompts}) must be <= the prompts per step ({p.RlPromptsPerStep})");
        if (p.BupoSteps > p.RlSteps) throw new BupoException($"--bupo-steps ({p.BupoSteps}) must be <= the RL steps ({p.RlSteps})");
        return p;
    }

    /// <summary>The profile <paramref name="a"/> asks for (<see cref="Quick"/> or <see cref="Default"/>) with its overrides.</summary>
    public static DemoProfile For(DemoSettings a) => (a.Quick ? Quick : Default).With(a);

    public static DemoProfile Quick => new()
    {
        Name = "quick",
        Model = new DemoModelSpec { Layers = 4, Embedding = 64, HeadDim = 16, FeedForward = 192, ContextLength = 256 },
        Tasks = new ArithmeticTaskOptions { MaxSteps = 1 },
        SftSteps = 200, SftBatch = 32, SftLr = 3e-3,
        AnalysisPrompts = 8,
        RlSteps = 3, RlPromptsPerStep = 4, RlSamplesPerPrompt = 4, RlLr = 1e-4, RlMiniBatchPrompts = 2, BupoSteps = 2, RlTrainPrompts = 64,
        EvalProblems = 24, EvalK = 4, MaxResponseTokens = 24, LayerEvalProblems = 4, LayerEvalK = 2,
    };
}

/// <summary>
/// What one <c>bupo-hybrid demo</c> run is asked for: where it writes, which profile, and the overrides of the profile's
/// values (null: the profile's).
/// </summary>
public sealed record DemoSettings
{
    /// <summary>The default work dir (SFT cache): $XDG_CACHE_HOME/bupo-hybrid/demo, else ~/.cache/bupo-hybrid/demo.</summary>
    public static string DefaultWorkDir => Path.Combine(
        Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } x ? x : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache"),
        "bupo-hybrid", "demo");

    public required string Out { get; init; }
    public required string WorkDir { get; init; }
    public bool Quick { get; init; }
    public bool Force { get; init; }
    public string Device { get; init; } = "cpu";
    public long Seed { get; init; } = 1;
    public string BupoLayer { get; init; } = "analysis";
    public int Threads { get; init; } = 1;
    public int TrainThreads { get; init; } = 1;
    public int? RlSteps { get; init; }
    public double? RlLr { get; init; }
    public int? BupoSteps { get; init; }
    public int? GroupSize { get; init; }
    public int? PromptsPerStep { get; init; }
    public int? EvalProblems { get; init; }
    public int? MiniBatchPrompts { get; init; }
    public int? PpoEpochs { get; init; }
    public int? SftSteps { get; init; }
    public int? TaskSteps { get; init; }
    public DemonstrationFlaw? Flaw { get; init; }
    public double? FlawShare { get; init; }
    /// <summary>A multi-seed study instead of one run (then <see cref="Seed"/> is ignored).</summary>
    public long[]? Seeds { get; init; }
}
