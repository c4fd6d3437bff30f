using System.CommandLine;
using System.CommandLine.Parsing;

namespace BuPO.Hybrid.Cli;

/// <summary>
/// Runs the command line: a parse error or a <see cref="BupoException"/> becomes one line on stderr and a
/// non-zero exit code; a stack trace is printed only with BUPO_DEBUG=1.
/// </summary>
public static class CliHost
{
    /// <summary>Exit code for bad usage (unknown option, missing argument).</summary>
    public const int UsageError = 2;
    /// <summary>Exit code for bad input or a failed run.</summary>
    public const int Failure = 1;

    /// <summary>The <c>bupo-hybrid</c> command line: every command.</summary>
    public static RootCommand CreateRoot()
    {
        var root = new RootCommand("bupo-hybrid: Bottom-up Policy Optimization (BuPO) and internal-policy probes for GGUF models");
        root.Subcommands.Add(Commands.InspectCommand.Create());
        root.Subcommands.Add(Commands.GenerateCommand.Create());
        root.Subcommands.Add(Commands.AnalyzeCommand.Create());
        root.Subcommands.Add(Commands.TrainCommand.Create());
        root.Subcommands.Add(Commands.PlanCommand.Create());
        root.Subcommands.Add(Commands.EvalCommand.Create());
        root.Subcommands.Add(Commands.DemoCommand.Create());
        root.Subcommands.Add(Commands.ReportCommand.Create());
        root.Subcommands.Add(Commands.BenchCommand.Create());
        return root;
    }

    /// <summary>Parses and runs <paramref name="args"/> against <paramref name="root"/>; returns the exit code.</summary>
    public static int Run(RootCommand root, string[] args, TextWriter? stdout = null, TextWriter? stderr = null)
    {
        stderr ??= Console.Error;
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            stderr.WriteLine($"error: {parse.Errors[0].Message} (see --help)");
            return UsageError;
        }
        if (UnknownOption(parse) is { } unknown)
        {
            stderr.WriteLine($"error: unknown option '{unknown}' (see --help; put '--' before an argument that starts with '-')");
            return UsageError;
        }
        try
        {
            var config = new InvocationConfiguration { EnableDefaultExceptionHandler = false };
            if (stdout != null) config.Output = stdout;
            config.Error = stderr;
            return parse.Invoke(config);
        }
        catch (Exception e) when (Unwrap(e) is var inner && inner is BupoException or OperationCanceledException or IOException or UnauthorizedAccessException)
        {
            stderr.WriteLine(inner is OperationCanceledException ? "cancelled" : $"error: {inner.Message}");
            if (Environment.GetEnvironmentVariable("BUPO_DEBUG") == "1") stderr.WriteLine(e);
            return inner is OperationCanceledException ? 130 : Failure;
        }
        catch (Exception e)
        {
            var inner = Unwrap(e);
            stderr.WriteLine($"error: unexpected {inner.GetType().Name}: {inner.Message} (set BUPO_DEBUG=1 for details)");
            if (Environment.GetEnvironmentVariable("BUPO_DEBUG") == "1") stderr.WriteLine(e);
            return Failure;
        }
    }

    /// <summary>
    /// A token that looks like an option ('-x', '--xyz') but was bound to a command's positional argument: System.CommandLine
    /// accepts it as the argument's value, which would turn a misspelt option into a file name. Tokens after '--' and
    /// negative numbers are arguments.
    /// </summary>
    private static string? UnknownOption(ParseResult parse)
    {
        var afterDoubleDash = new HashSet<Token>(ReferenceEqualityComparer.Instance);
        var seen = false;
        foreach (var t in parse.Tokens)
        {
            if (seen) afterDoubleDash.Add(t);
            else if (t.Type == TokenType.DoubleDash) seen = true;
        }
        for (SymbolResult? r = parse.CommandResult; r != null; r = r.Parent)
        {
            if (r is not CommandResult command) continue;
            foreach (var child in command.Children)
            {
                if (child is not ArgumentResult arg) continue;
                foreach (var t in arg.Tokens)
                    if (t.Value.Length > 1 && t.Value[0] == '-' && !afterDoubleDash.Contains(t)
                        && !double.TryParse(t.Value, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out _))
                        return t.Value;
            }
        }
        return null;
    }

    private static Exception Unwrap(Exception e)
    {
        while (e is AggregateException { InnerExceptions.Count: 1 } or System.Reflection.TargetInvocationException && e.InnerException != null)
            e = e.InnerException!;
        return e;
    }
}
