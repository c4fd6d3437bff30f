using BuPO.Hybrid.Reports;
using System.CommandLine;
using BuPO.Hybrid.Demo;
using Spectre.Console;

namespace BuPO.Hybrid.Cli.Commands;

/// <summary>
/// <c>bupo-hybrid report RUN_DIR [RUN_DIR...] --out DIR</c>: report.md and PNG curves (reward, accuracy, entropies, clip
/// fraction, KL, sampler mismatch, tokens/s) of one or more train run folders, finished or still running.
/// </summary>
public static class ReportCommand
{
    public static Command Create()
    {
        var runs = new Argument<string[]>("runs") { Description = "Run folders of bupo-hybrid train (each holds metrics.jsonl)", Arity = ArgumentArity.OneOrMore };
        var outDir = new Option<string>("--out") { Description = "Folder of report.md and the PNG curves", DefaultValueFactory = _ => "run-report" };
        var names = new Option<string[]>("--name") { Description = "Label of each run in the plots, in order (default: the folder names)", AllowMultipleArgumentsPerToken = true };
        var cmd = new Command("report", "Curves of one or more training runs (finished or running): report.md with PNG plots") { runs, outDir, names };
        cmd.SetAction(parse =>
        {
            var dirs = parse.GetValue(runs)!;
            var labels = parse.GetValue(names) ?? [];
            if (labels.Length > 0 && labels.Length != dirs.Length)
                throw new BupoException($"--name: {labels.Length} names for {dirs.Length} run folders (give one per folder, or none)");
            var curves = dirs.Select((d, i) => RunCurves.Read(d, labels.Length > 0 ? labels[i] : null)).ToList();
            var report = RunReport.Write(curves, Path.GetFullPath(parse.GetValue(outDir)!));
            var console = CliConsole.Create(parse.InvocationConfiguration.Output);
            foreach (var c in curves)
                console.WriteLine($"{c.Name}: {c.Steps.Count} steps{(c.Finished ? " (finished)" : c.PlannedSteps is { } n ? $" of {n}" : "")}");
            console.WriteLine($"wrote {report}");
            return 0;
        });
        return cmd;
    }
}
