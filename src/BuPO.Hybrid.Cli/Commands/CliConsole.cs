using System.Globalization;
using Spectre.Console;

namespace BuPO.Hybrid.Cli.Commands;

/// <summary>Small helpers shared by the commands: their console, list parsing, progress, number formats.</summary>
internal static class CliConsole
{
    /// <summary>
    /// The one way commands make a Spectre console on <paramref name="stdout"/>: ANSI and colors only on the real terminal;
    /// live displays only there and only when <paramref name="interactive"/>; off a terminal (a test's writer, a file)
    /// at least <paramref name="offTerminalWidth"/> columns wide, so tables do not wrap.
    /// </summary>
    public static IAnsiConsole Create(TextWriter stdout, bool interactive = true, int offTerminalWidth = 160)
    {
        bool real = ReferenceEquals(stdout, Console.Out);
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(stdout),
            Ansi = real ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = real ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
            Interactive = real && interactive ? InteractionSupport.Detect : InteractionSupport.No,
        });
        if (!real || Console.IsOutputRedirected) console.Profile.Width = Math.Max(console.Profile.Width, offTerminalWidth);
        return console;
    }

    /// <summary>"1,2,4" -> [1, 2, 4]; a bad entry is a one-line error naming the option.</summary>
    public static int[] ParseIntList(string option, string value)
    {
        var parts = value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length == 0) throw new BupoException($"{option}: give a comma-separated list of numbers, got '{value}'");
        var result = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!int.TryParse(parts[i], NumberStyles.Integer, CultureInfo.InvariantCulture, out result[i]))
                throw new BupoException($"{option}: '{parts[i]}' is not a whole number");
        return result;
    }

    public static string F(double v, string format) => v.ToString(format, CultureInfo.InvariantCulture);
}
