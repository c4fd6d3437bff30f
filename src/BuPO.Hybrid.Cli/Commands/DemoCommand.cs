using System.CommandLine;
using BuPO.Hybrid.Demo;
using Spectre.Console;

namespace BuPO.Hybrid.Cli.Commands;

/// <summary>
/// <c>bupo-hybrid demo</c>: parses the options into <see cref="DemoSettings"/>, runs <see cref="DemoPipeline"/> and renders
/// its progress and the held-out table.
/// </summary>
public static class DemoCommand
{
    public static Command Create()
    {
        var outDir = new Option<string>("--out") { Description = "Folder of the report (report.md, PNG plots, JSON/CSV metrics)", DefaultValueFactory = _ => "demo-report" };
        var workDir = new Option<string?>("--workdir") { Description = $"Cache of the SFT model (default: {DemoSettings.DefaultWorkDir})" };
        var quick = new Option<bool>("--quick") { Description = "A much smaller run (about 2 minutes on 2 CPU cores), for tests" };
        var force = new Option<bool>("--force") { Description = "Retrain the SFT model even when the work dir holds one" };
        var device = new Option<string>("--device") { Description = "Torch device of SFT, RL updates and analysis: cpu, cuda, cuda:N", DefaultValueFactory = _ => "cpu" };
        var seed = new Option<long>("--seed") { Description = "Seed of the model init, data, SFT and both RL runs", DefaultValueFactory = _ => 1L };
        var seeds = new Option<string?>("--seeds") { Description = "A multi-seed study, e.g. 1,2,3: the whole demo per seed into --out/seed-N, then study.md (mean ± std, paired BuPO - GRPO per seed, reward band)" };
        var layer = new Option<string>("--bupo-layer") { Description = "BuPO's block k: 'analysis' (the SFT model's boundary layer; the middle block when the rule picks the top one) or a 0-based block", DefaultValueFactory = _ => "analysis" };
        var threads = new Option<int>("--threads") { Description = "llama.cpp threads (sampling, evaluation, analysis)", DefaultValueFactory = _ => 1 };
        var trainThreads = new Option<int>("--train-threads") { Description = "Torch CPU threads (0 = torch's default; 1 is fastest for this tiny model on a busy machine)", DefaultValueFactory = _ => 1 };
        var rlSteps = new Option<int?>("--rl-steps") { Description = "RL steps of each run (GRPO and BuPO; default: the profile's)" };
        var rlLr = new Option<double?>("--rl-lr") { Description = "RL learning rate (default: the profile's)" };
        var bupoSteps = new Option<int?>("--bupo-steps") { Description = "BuPO's steps on the internal policy before switching to the full policy (default: the profile's)" };
        var group = new Option<int?>("--group-size") { Description = "RL samples per prompt (default: the profile's)" };
        var prompts = new Option<int?>("--prompts-per-step") { Description = "RL prompts per step (default: the profile's)" };
        var evalProblems = new Option<int?>("--eval-problems") { Description = "Held-out problems evaluated (default: the profile's)" };
        var miniBatch = new Option<int?>("--mini-batch-prompts") { Description = "RL prompts per PPO mini-batch, one optimizer step each (default: the profile's)" };
        var ppoEpochs = new Option<int?>("--ppo-epochs") { Description = "RL passes over each rollout batch (default: the profile's)" };
        var sftSteps = new Option<int?>("--sft-steps") { Description = "SFT steps (default: the profile's)" };
        var flaw = new Option<string?>("--sft-flaw") { Description = "Flaw of some SFT demonstrations, which RL can correct: None, DropLastStep (the last operation left out), StaleBox (the box holds the amount before the last operation) (default: the profile's)" };
        var flawShare = new Option<double?>("--sft-flaw-share") { Description = "Share of SFT demonstrations with the flaw, in [0, 1) (default: the profile's)" };
        Bench.BenchCommon.OneOf(flaw, Enum.GetNames<DemonstrationFlaw>()); // one line naming the values, as the other choice options
        var taskSteps = new Option<int?>("--task-steps") { Description = "Most operations per generated problem (task difficulty; default: the profile's)" };
        var cmd = new Command("demo", "End-to-end demo: SFT a tiny model on arithmetic word problems, analyze it, train GRPO and BuPO, evaluate, write a report")
        {
            outDir, workDir, quick, force, device, seed, layer, threads, trainThreads, rlSteps, rlLr, bupoSteps, group, prompts, evalProblems, miniBatch, ppoEpochs, sftSteps, taskSteps, flaw, flawShare, seeds,
        };
        cmd.SetAction(parse => Run(new DemoSettings
        {
            Out = parse.GetValue(outDir)!, WorkDir = parse.GetValue(workDir) ?? DemoSettings.DefaultWorkDir, Quick = parse.GetValue(quick), Force = parse.GetValue(force),
            Device = parse.GetValue(device)!, Seed = parse.GetValue(seed), BupoLayer = parse.GetValue(layer)!, Threads = parse.GetValue(threads),
            TrainThreads = parse.GetValue(trainThreads), RlSteps = parse.GetValue(rlSteps), RlLr = parse.GetValue(rlLr), BupoSteps = parse.GetValue(bupoSteps),
            GroupSize = parse.GetValue(group), PromptsPerStep = parse.GetValue(prompts), EvalProblems = parse.GetValue(evalProblems),
            MiniBatchPrompts = parse.GetValue(miniBatch), PpoEpochs = parse.GetValue(ppoEpochs), SftSteps = parse.GetValue(sftSteps), TaskSteps = parse.GetValue(taskSteps), Flaw = parse.GetValue(flaw) is { } f ? Enum.Parse<DemonstrationFlaw>(f, ignoreCase: true) : null, FlawShare = parse.GetValue(flawShare),
            Seeds = parse.GetValue(seeds) is { } list ? CliConsole.ParseIntList("--seeds", list).Select(x => (long)x).ToArray() : null,
        }, parse.InvocationConfiguration.Output));
        return cmd;
    }

    /// <summary>Runs the demo (or the multi-seed study) and writes its progress and results to <paramref name="stdout"/>.</summary>
    public static int Run(DemoSettings a, TextWriter stdout)
    {
        var console = CliConsole.Create(stdout, interactive: false); // progress as lines, not a live display
        var observer = new ConsoleObserver(console);
        if (a.Seeds is not null)
        {
            var study = DemoPipeline.RunStudy(a, observer);
            console.WriteLine($"multi-seed study: {study}");
            console.WriteLine(File.ReadAllText(study).Split("\n\nTraining reward")[0]);
            return 0;
        }
        var r = DemoPipeline.Run(a, observer);
        var table = new Table().AddColumns("model", $"avg@{r.K}", "pass@1", $"pass@{r.K}", "finished");
        foreach (var row in r.Rows) table.AddRow(row.Model, DemoPipeline.F(row.AvgAtK), DemoPipeline.F(row.Pass1), DemoPipeline.F(row.PassK), DemoPipeline.F(row.FinishedShare));
        console.Write(table);
        console.WriteLine($"held-out: {r.HeldOutProblems} problems, {r.K} samples each at T = 1; BuPO block k = {r.BupoLayer}; total {r.Seconds:0} s");
        return 0;
    }

    private sealed class ConsoleObserver(IAnsiConsole console) : IDemoObserver
    {
        public void Heading(string text) => console.MarkupLine($"[bold]{Markup.Escape(text)}[/]");
        public void Line(string text) => console.WriteLine(text);
        public void Stage(string name, string note, double seconds) =>
            console.MarkupLine($"[green]✓[/] {Markup.Escape(name)}: {Markup.Escape(note)} ({seconds:0.0} s)");
    }
}
