using System.CommandLine;
using System.Globalization;
using BuPO.Hybrid.RL.Training;

namespace BuPO.Hybrid.Cli.Commands;

/// <summary>
/// <c>bupo-hybrid train</c>: GRPO/BuPO training of a GGUF model (<see cref="TrainingRun"/>). Every setting of
/// <see cref="TrainOptions"/> is an option under its kebab-case name and a key of the <c>--config</c> JSON file;
/// explicit options override the file. <c>--print-config</c> prints the resolved settings and exits.
/// </summary>
public static class TrainCommand
{
    public static Command Create()
    {
        var printConfig = new Option<bool>("--print-config") { Description = "Print the resolved settings as JSON and exit" };
        var cmd = new Command("train", "Train a GGUF model with GRPO or BuPO: llama.cpp rollouts, TorchSharp updates, quantized weight sync") { printConfig };
        var binding = new TrainOptionBinding(cmd);
        cmd.SetAction(parse =>
        {
            var stdout = parse.InvocationConfiguration.Output;
            TrainOptions Resolve(TrainOptions start) => binding.Resolve(parse, start);
            var resolved = Resolve(new TrainOptions());
            if (resolved.Resume != null)
            {
                var dir = TrainingCheckpoint.ResolveFolder(resolved.Resume, Path.Combine(Path.GetFullPath(resolved.Output), "checkpoints"));
                var saved = TrainingCheckpoint.ReadOptions(dir);
                resolved = Resolve(TrainConfig.ApplyJson(new TrainOptions(), saved.ToJsonString(), Path.Combine(dir, TrainingCheckpoint.StateFile)));
            }
            if (parse.GetValue(printConfig))
            {
                resolved.Validate(needDataset: false);
                stdout.WriteLine(TrainConfig.ToJson(resolved.Resolved()));
                return 0;
            }
            return Run(resolved, stdout);
        });
        return cmd;
    }

    private static int Run(TrainOptions o, TextWriter stdout)
    {
        o.Validate();
        using var cts = new CancellationTokenSource();
        var presses = 0;
        ConsoleCancelEventHandler handler = (_, e) =>
        {
            if (Interlocked.Increment(ref presses) == 1)
            {
                e.Cancel = true;
                Console.Error.WriteLine("stopping at the next safe point and saving a checkpoint (Ctrl+C again to abort)");
                cts.Cancel();
            }
        };
        Console.CancelKeyPress += handler;
        try
        {
            var reward = TrainingRun.CreateReward(o);
            try
            {
                var result = TrainingRun.Run(o, reward, observer: new ConsoleObserver(stdout), ct: cts.Token);
                stdout.WriteLine(result.Cancelled
                    ? $"stopped after step {result.LastStep}; checkpoint {result.LastCheckpoint}"
                    : $"done: {result.LastStep} steps; metrics {result.MetricsJsonl}; sampler model {result.SamplerGguf}{(result.LoraAdapter is { } a ? $" + LoRA {a}" : "")}; checkpoint {result.LastCheckpoint}");
                // What the memory plan is checked against (the plan command's tests read this line).
                if (ProcessMemory.PeakResidentBytes() is { } peak)
                    stdout.WriteLine(FormattableString.Invariant($"peak memory: {ByteSize.Format(peak)} resident ({peak} bytes, VmHWM)"));
                return result.Cancelled ? 130 : 0;
            }
            finally
            {
                (reward as IDisposable)?.Dispose();
            }
        }
        finally
        {
            Console.CancelKeyPress -= handler;
        }
    }

    /// <summary>One progress line per step.</summary>
    private sealed class ConsoleObserver(TextWriter stdout) : ITrainingObserver
    {
        public void OnMessage(string message) => stdout.WriteLine(message);

        public void OnLayerChosen(LayerAnalysis a) => stdout.WriteLine(
            $"bupo-layer auto: k = {a.Layer} ({a.Reason}); dH_FFN per block: {string.Join(" ", a.DeltaFfn.Select(d => d.ToString("+0.000;-0.000", CultureInfo.InvariantCulture)))}");

        public void OnStep(StepMetrics m, TrainOptions o)
        {
            var inv = CultureInfo.InvariantCulture;
            var phase = m.Phase == "ipa" ? $"ipa k={m.BupoLayer}" : "grpo";
            var hl = double.IsNaN(m.EntropyLayer) ? "" : string.Format(inv, "/{0:0.00}", m.EntropyLayer);
            stdout.WriteLine(string.Format(inv,
                "step {0}/{1} [{2}] reward {3:0.000} acc {4:0.000} len {5:0.0} H {6:0.00}{7} clip {8:0.000} kl {9:0.0e0} gn {10:0.000} mis {11:0.0e0}/{12:0.000} | rollout {13:0.0}s {14:0} tok/s  train {15:0.0}s {16:0} tok/s  sync {17:0.00}s",
                m.Step, o.Steps, phase, m.RewardMean, m.Accuracy, m.ResponseLengthMean, m.EntropyFull, hl, m.ClipFraction, m.ApproxKl, m.GradNorm,
                m.MismatchKl, m.MismatchOutsideFraction, m.RolloutSeconds, m.RolloutTokensPerSecond, m.TrainSeconds, m.TrainTokensPerSecond, m.SyncSeconds));
        }
    }
}

/// <summary>
/// Every <see cref="TrainOptions"/> setting (<see cref="TrainSettings.All"/>) as a typed option of a command (kebab-case
/// names, help with defaults) plus <c>--config FILE</c>, and their resolution: defaults (or a start) &lt; the config file
/// &lt; the options given. System.CommandLine parses each value, so a malformed one is a usage error naming the option.
/// Shared by <c>train</c> and <c>plan</c>, so both accept the same settings.
/// </summary>
internal sealed class TrainOptionBinding
{
    private readonly Option<FileInfo?> _config = new("--config") { Description = "JSON file of settings (keys: the option names without dashes); options given here override it" };
    private readonly List<BoundOption> _options = [];

    /// <summary>Adds --config and every setting's option to <paramref name="cmd"/>.</summary>
    public TrainOptionBinding(Command cmd)
    {
        cmd.Options.Add(_config);
        foreach (var setting in TrainSettings.All)
        {
            var bound = setting.Accept(OptionFactory.Instance);
            _options.Add(bound);
            cmd.Options.Add(bound.Option);
        }
        // A malformed size is a usage error (exit 2), found before anything is read.
        this["memory"].Validators.Add(r =>
        {
            foreach (var token in r.Tokens)
                try { ByteSize.Parse(token.Value); }
                catch (BupoException e) { r.AddError(e.Message); }
        });
    }

    /// <summary>The option of a setting (by its name without dashes).</summary>
    public Option this[string name] => _options.First(o => o.Setting.Name == name).Option;

    /// <summary>
    /// <paramref name="start"/> with the config file's values and then the options given applied; on --resume the
    /// checkpoint's settings are the start, so only what the user gives again can differ.
    /// </summary>
    public TrainOptions Resolve(ParseResult parse, TrainOptions start)
    {
        var resolved = start;
        if (parse.GetValue(_config) is { } file) resolved = TrainConfig.ApplyFile(resolved, file.FullName);
        foreach (var bound in _options)
        {
            var result = parse.GetResult(bound.Option);
            if (result is null || result.Implicit) continue;
            resolved = bound.Apply(parse, resolved);
        }
        return resolved;
    }

    /// <summary>A setting's option and how its parsed value is set on the record.</summary>
    private sealed record BoundOption(TrainSetting Setting, Option Option, Func<ParseResult, TrainOptions, TrainOptions> Apply);

    /// <summary>Makes the <c>Option&lt;T&gt;</c> of a <see cref="TrainSetting{T}"/>.</summary>
    private sealed class OptionFactory : ITrainSettingVisitor<BoundOption>
    {
        public static readonly OptionFactory Instance = new();

        public BoundOption Visit<T>(TrainSetting<T> setting)
        {
            var option = new Option<T>("--" + setting.Name) { Description = Help(setting), HelpName = HelpName(setting) };
            if (typeof(T) == typeof(string[])) option.AllowMultipleArgumentsPerToken = false;
            if (setting.Choices is { } choices)
            {
                // Choices have names that are not C# identifiers (bf16-pure, token-mean): parsed by the setting's own table.
                option.CustomParser = r =>
                {
                    var text = r.Tokens.Count == 1 ? r.Tokens[0].Value : "";
                    if (choices.TryParse(text, out var value)) return value;
                    r.AddError($"--{setting.Name}: '{text}' is not {choices.Expected}");
                    return default!;
                };
                option.CompletionSources.Add(choices.Names.ToArray());
            }
            return new BoundOption(setting, option, (parse, o) =>
            {
                var value = parse.GetValue(option);
                // A bare flag (--tis) means true; Option<bool> gives that. A list given on the command line replaces the file's.
                return setting.Set(o, value is null && typeof(T) == typeof(string[]) ? (T)(object)Array.Empty<string>() : value!);
            });
        }

        private static string Help<T>(TrainSetting<T> setting) =>
            typeof(T) == typeof(string[]) ? setting.Description + " (repeatable)"
            : setting.DefaultText is { } d ? $"{setting.Description} (default {d})"
            : setting.Description;

        private static string? HelpName<T>(TrainSetting<T> setting) => setting switch
        {
            { Choices: { } c } => string.Join("|", c.Names),
            _ when typeof(T) == typeof(bool) => null,
            _ when typeof(T) == typeof(int) || typeof(T) == typeof(int?) || typeof(T) == typeof(long) => "N",
            _ when typeof(T) == typeof(double) => "X",
            { Name: "model" or "dataset" or "output" or "data-dir" or "resume" } => "PATH",
            _ => "VALUE",
        };
    }
}
