using System.CommandLine;

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

    public static int Run(RootCommand root, string[] args, TextWriter? stdout = null, TextWriter? stderr = null)
    {
        stderr ??= Console.Error;
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            stderr.WriteLine($"error: {parse.Errors[0].Message} (see --help)");
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

    private static Exception Unwrap(Exception e)
    {
        while (e is AggregateException { InnerExceptions.Count: 1 } or System.Reflection.TargetInvocationException && e.InnerException != null)
            e = e.InnerException!;
        return e;
    }
}
