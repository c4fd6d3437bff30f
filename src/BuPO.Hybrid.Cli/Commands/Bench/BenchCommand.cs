using System.CommandLine;

namespace BuPO.Hybrid.Cli.Commands.Bench;

/// <summary>
/// The <c>bench</c> subcommands of this folder: <c>train</c>, <c>sync</c>, <c>analyze</c>, <c>tokenize</c> (each in its own
/// file). <see cref="CreateParent"/> makes a minimal <c>bench</c> parent holding them; a parent defined elsewhere (with
/// <c>bench rollout</c>) registers them with <see cref="AddTo"/> instead.
/// </summary>
public static class BenchSubcommands
{
    /// <summary>Version of the <c>--json</c> layout of every bench subcommand here (bumped on incompatible changes).</summary>
    public const int JsonSchemaVersion = 1;

    /// <summary>Adds train, sync, analyze and tokenize to <paramref name="bench"/>.</summary>
    public static Command AddTo(Command bench)
    {
        bench.Subcommands.Add(BenchTrainCommand.Create());
        bench.Subcommands.Add(BenchSyncCommand.Create());
        bench.Subcommands.Add(BenchAnalyzeCommand.Create());
        bench.Subcommands.Add(BenchTokenizeCommand.Create());
        return bench;
    }

    /// <summary>A <c>bench</c> command holding these subcommands.</summary>
    public static Command CreateParent() =>
        AddTo(new Command("bench", "Benchmarks: trainer step, weight sync, analyze lens, tokenization (tables; --json FILE for machine-readable results)"));
}
