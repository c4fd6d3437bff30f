using System.Diagnostics;
namespace BuPO.Hybrid.Cli.Tests;

/// <summary>Runs the CLI's real command line in-process with captured stdout and stderr.</summary>
internal static class CliRunner
{
    public static (int Code, string Out, string Err) Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var code = CliHost.Run(CliHost.CreateRoot(), args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    /// <summary>Runs the built CLI as a child process (its own memory, its own native crashes), 120 s at most.</summary>
    public static (int Code, string Out, string Err) RunChild(string[] args)
    {
        var psi = new ProcessStartInfo(Path.Combine(AppContext.BaseDirectory, OperatingSystem.IsWindows() ? "bupo-hybrid.exe" : "bupo-hybrid"))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(120_000))
        {
            p.Kill(entireProcessTree: true);
            return (-1, stdout.Result, "timed out after 120 s; " + stderr.Result);
        }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }
}
