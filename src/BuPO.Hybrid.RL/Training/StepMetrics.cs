using System.Globalization;
using System.Reflection;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using BuPO.Hybrid.RL.Algorithms;

namespace BuPO.Hybrid.RL.Training;

/// <summary>
/// The metrics of one training step: one line of <c>metrics.jsonl</c> (with <c>"event": "step"</c>) and one row of
/// <c>metrics.csv</c>, under the names below. NaN (a value that does not apply) is written as null / an empty cell.
/// </summary>
public sealed record StepMetrics
{
    [JsonPropertyName("step")] public int Step { get; init; }
    /// <summary>"ipa" (block k's internal policy) or "grpo" (full policy).</summary>
    [JsonPropertyName("phase")] public string Phase { get; init; } = "grpo";
    /// <summary>BuPO's block k (0-based), or -1 for plain GRPO.</summary>
    [JsonPropertyName("bupo_layer")] public int BupoLayer { get; init; } = -1;
    [JsonPropertyName("lr")] public double Lr { get; init; }
    [JsonPropertyName("reward_mean")] public double RewardMean { get; init; }
    [JsonPropertyName("reward_std")] public double RewardStd { get; init; }
    /// <summary>Share of responses with reward ≥ accuracy-threshold.</summary>
    [JsonPropertyName("accuracy")] public double Accuracy { get; init; }
    [JsonPropertyName("response_length_mean")] public double ResponseLengthMean { get; init; }
    [JsonPropertyName("response_length_max")] public int ResponseLengthMax { get; init; }
    /// <summary>Share of responses that hit max-response-tokens.</summary>
    [JsonPropertyName("truncated_fraction")] public double TruncatedFraction { get; init; }
    /// <summary>Share of groups whose rewards are all equal (zero advantage, no learning signal).</summary>
    [JsonPropertyName("zero_advantage_groups")] public double ZeroAdvantageGroups { get; init; }
    [JsonPropertyName("entropy_full")] public double EntropyFull { get; init; }
    [JsonPropertyName("entropy_layer")] public double EntropyLayer { get; init; } = double.NaN;
    [JsonPropertyName("loss")] public double Loss { get; init; }
    [JsonPropertyName("clip_fraction")] public double ClipFraction { get; init; }
    [JsonPropertyName("dual_clip_fraction")] public double DualClipFraction { get; init; }
    [JsonPropertyName("approx_kl")] public double ApproxKl { get; init; }
    [JsonPropertyName("ref_kl")] public double RefKl { get; init; } = double.NaN;
    [JsonPropertyName("grad_norm")] public double GradNorm { get; init; }
    [JsonPropertyName("optimizer_steps")] public int OptimizerSteps { get; init; }
    [JsonPropertyName("skipped_steps")] public int SkippedSteps { get; init; }
    /// <summary>Mean of log π_sampler - log π_trainer over the response tokens (k1 estimate of KL(sampler ‖ trainer)).</summary>
    [JsonPropertyName("mismatch_kl")] public double MismatchKl { get; init; }
    [JsonPropertyName("mismatch_k3")] public double MismatchK3 { get; init; }
    /// <summary>Share of tokens whose π_trainer/π_sampler ratio is outside [0.8, 1.25].</summary>
    [JsonPropertyName("mismatch_outside_fraction")] public double MismatchOutsideFraction { get; init; }
    [JsonPropertyName("tis_truncated_fraction")] public double TisTruncatedFraction { get; init; }
    [JsonPropertyName("rollout_tokens")] public long RolloutTokens { get; init; }
    [JsonPropertyName("rollout_tokens_per_s")] public double RolloutTokensPerSecond { get; init; }
    [JsonPropertyName("train_tokens")] public long TrainTokens { get; init; }
    [JsonPropertyName("train_tokens_per_s")] public double TrainTokensPerSecond { get; init; }
    /// <summary>Whether the weights were exported to the sampler after this step.</summary>
    [JsonPropertyName("synced")] public bool Synced { get; init; }
    [JsonPropertyName("sync_seconds")] public double SyncSeconds { get; init; }
    [JsonPropertyName("rollout_seconds")] public double RolloutSeconds { get; init; }
    [JsonPropertyName("reward_seconds")] public double RewardSeconds { get; init; }
    /// <summary>The no-grad pass (old log-probs, mismatch, entropies): part of <see cref="TrainSeconds"/>.</summary>
    [JsonPropertyName("old_logprob_seconds")] public double OldLogProbSeconds { get; init; }
    /// <summary>Old-log-prob pass plus the updates.</summary>
    [JsonPropertyName("train_seconds")] public double TrainSeconds { get; init; }
    [JsonPropertyName("step_seconds")] public double StepSeconds { get; init; }

    private static readonly (string Name, PropertyInfo Property)[] Columns = typeof(StepMetrics)
        .GetProperties(BindingFlags.Public | BindingFlags.Instance)
        .Where(p => p.GetCustomAttribute<JsonPropertyNameAttribute>() != null)
        .OrderBy(p => p.MetadataToken)
        .Select(p => (p.GetCustomAttribute<JsonPropertyNameAttribute>()!.Name, p))
        .ToArray();

    /// <summary>The CSV column names, in order.</summary>
    public static IReadOnlyList<string> ColumnNames { get; } = Columns.Select(c => c.Name).ToArray();

    /// <summary>The JSONL line (<c>"event": "step"</c> first).</summary>
    public string ToJsonLine()
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            w.WriteString("event", "step");
            foreach (var (name, p) in Columns) WriteValue(w, name, p.GetValue(this));
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }

    /// <summary>The CSV row.</summary>
    public string ToCsvRow() => string.Join(",", Columns.Select(c => Format(c.Property.GetValue(this))));

    /// <summary>Reads a <c>"event": "step"</c> JSONL line back.</summary>
    public static StepMetrics FromJson(JsonElement e)
    {
        var m = (object)new StepMetrics();
        foreach (var (name, p) in Columns)
        {
            if (!e.TryGetProperty(name, out var v)) continue;
            object? value = p.PropertyType switch
            {
                var t when t == typeof(double) => v.ValueKind == JsonValueKind.Null ? double.NaN : v.GetDouble(),
                var t when t == typeof(int) => v.GetInt32(),
                var t when t == typeof(long) => v.GetInt64(),
                var t when t == typeof(bool) => v.GetBoolean(),
                _ => v.GetString(),
            };
            p.SetValue(m, value);
        }
        return (StepMetrics)m;
    }

    internal static void WriteValue(Utf8JsonWriter w, string name, object? v)
    {
        switch (v)
        {
            case double d when !double.IsFinite(d): w.WriteNull(name); break;
            case double d: w.WriteNumber(name, d); break;
            case int i: w.WriteNumber(name, i); break;
            case long l: w.WriteNumber(name, l); break;
            case bool b: w.WriteBoolean(name, b); break;
            case null: w.WriteNull(name); break;
            default: w.WriteString(name, v.ToString()); break;
        }
    }

    private static string Format(object? v) => v switch
    {
        double d when !double.IsFinite(d) => "",
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        bool b => b ? "1" : "0",
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        null => "",
        _ => v.ToString()!.Contains(',') ? $"\"{v}\"" : v.ToString()!,
    };
}

/// <summary>
/// Appends step metrics to <c>metrics.jsonl</c> and <c>metrics.csv</c> (flushed per step). On resume the files are cut
/// back to the checkpoint's step first, so they hold each step once.
/// </summary>
public sealed class MetricsWriter : IDisposable
{
    private readonly StreamWriter _jsonl;
    private readonly StreamWriter _csv;

    public string JsonlPath { get; }
    public string CsvPath { get; }

    // TorchSharp's writer appends each event to its file as it is added: nothing to flush or close.
    private readonly TorchSharp.Modules.SummaryWriter? _tensorBoard;
    private int _optimizerStep;

    /// <param name="outputDir">The run folder.</param>
    /// <param name="keepThroughStep">On resume: keep the lines of steps up to this one, drop later ones.</param>
    /// <param name="tensorBoard">Also write TensorBoard event files to <c>outputDir/tensorboard</c> (a new file per start).</param>
    /// <param name="optimizerStepsBefore">Optimizer steps already taken (resume), so TensorBoard's optimizer-step axis continues.</param>
    public MetricsWriter(string outputDir, int? keepThroughStep, bool tensorBoard = false, int optimizerStepsBefore = 0)
    {
        JsonlPath = Path.Combine(outputDir, "metrics.jsonl");
        CsvPath = Path.Combine(outputDir, "metrics.csv");
        var header = string.Join(",", StepMetrics.ColumnNames);
        if (keepThroughStep is { } s)
        {
            Trim(JsonlPath, line => StepOfJson(line) is not { } st || st <= s);
            Trim(CsvPath, line => line == header || (int.TryParse(line.Split(',')[0], out var st) && st <= s));
        }
        else
        {
            File.Delete(JsonlPath);
            File.Delete(CsvPath);
        }
        var newCsv = !File.Exists(CsvPath) || new FileInfo(CsvPath).Length == 0;
        _jsonl = new StreamWriter(JsonlPath, append: true, new UTF8Encoding(false)) { NewLine = "\n" };
        _csv = new StreamWriter(CsvPath, append: true, new UTF8Encoding(false)) { NewLine = "\n" };
        if (newCsv) { _csv.WriteLine(header); _csv.Flush(); }
        if (tensorBoard)
        {
            var dir = Path.Combine(outputDir, "tensorboard");
            Directory.CreateDirectory(dir);
            _tensorBoard = TorchSharp.torch.utils.tensorboard.SummaryWriter(dir);
        }
        _optimizerStep = optimizerStepsBefore;
    }

    /// <summary>The scalars of a step as TensorBoard shows them (tag → value), NaN ones left out.</summary>
    public static IEnumerable<(string Tag, double Value)> TensorBoardScalars(StepMetrics m)
    {
        (string, double)[] all =
        [
            ("reward/mean", m.RewardMean), ("reward/accuracy", m.Accuracy), ("reward/std", m.RewardStd),
            ("response/length_mean", m.ResponseLengthMean), ("response/truncated_fraction", m.TruncatedFraction),
            ("entropy/full", m.EntropyFull), ("entropy/layer", m.EntropyLayer),
            ("update/loss", m.Loss), ("update/clip_fraction", m.ClipFraction), ("update/approx_kl", m.ApproxKl), ("update/ref_kl", m.RefKl),
            ("update/grad_norm", m.GradNorm), ("update/lr", m.Lr),
            ("sampler/mismatch_kl", m.MismatchKl), ("sampler/mismatch_outside_fraction", m.MismatchOutsideFraction),
            ("speed/rollout_tokens_per_s", m.RolloutTokensPerSecond), ("speed/train_tokens_per_s", m.TrainTokensPerSecond), ("speed/step_seconds", m.StepSeconds),
        ];
        return all.Where(x => double.IsFinite(x.Item2));
    }

    /// <summary>Writes a non-step event line (e.g. the boundary-layer analysis) to metrics.jsonl.</summary>
    public void WriteEvent(string jsonLine)
    {
        _jsonl.WriteLine(jsonLine);
        _jsonl.Flush();
    }

    public void Write(StepMetrics m)
    {
        _jsonl.WriteLine(m.ToJsonLine());
        _jsonl.Flush();
        _csv.WriteLine(m.ToCsvRow());
        _csv.Flush();
        if (_tensorBoard is { } tb)
        {
            foreach (var (tag, v) in TensorBoardScalars(m)) tb.add_scalar(tag, (float)v, m.Step);
        }
    }

    /// <summary>
    /// One event line per RL step with its optimizer steps in order (<c>"event":"optimizer_steps"</c>: loss, clip fraction,
    /// approx KL, grad norm per mini-batch), and the same per optimizer step in TensorBoard (<c>optimizer/*</c>).
    /// </summary>
    public void WriteOptimizerSteps(int step, IReadOnlyList<OptimizerStepStats> steps)
    {
        static double? N(double v) => double.IsFinite(v) ? v : null;
        WriteEvent(JsonSerializer.Serialize(new
        {
            @event = "optimizer_steps", step,
            loss = steps.Select(s => N(s.Loss)), clip_fraction = steps.Select(s => N(s.ClipFraction)),
            approx_kl = steps.Select(s => N(s.ApproxKl)), grad_norm = steps.Select(s => N(s.GradNorm)), skipped = steps.Select(s => s.Skipped),
        }));
        // The axis counts the steps the optimizer took (skipped ones are only in the JSON line), like AdamW.Steps,
        // from which a resumed run starts it.
        foreach (var s in steps.Where(s => !s.Skipped))
        {
            _optimizerStep++;
            if (_tensorBoard is not { } tb) continue;
            foreach (var (tag, v) in new[] { ("optimizer/loss", s.Loss), ("optimizer/clip_fraction", s.ClipFraction), ("optimizer/approx_kl", s.ApproxKl), ("optimizer/grad_norm", s.GradNorm) })
                if (double.IsFinite(v)) tb.add_scalar(tag, (float)v, _optimizerStep);
        }
    }

    /// <summary>Reads the step lines of a metrics.jsonl.</summary>
    public static IReadOnlyList<StepMetrics> ReadSteps(string jsonlPath)
    {
        var list = new List<StepMetrics>();
        foreach (var line in File.ReadLines(jsonlPath))
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            using var doc = JsonDocument.Parse(line);
            if (doc.RootElement.TryGetProperty("event", out var ev) && ev.GetString() == "step") list.Add(StepMetrics.FromJson(doc.RootElement));
        }
        return list;
    }

    private static int? StepOfJson(string line)
    {
        try
        {
            using var doc = JsonDocument.Parse(line);
            var e = doc.RootElement;
            if (e.TryGetProperty("event", out var ev) && ev.GetString() == "step" && e.TryGetProperty("step", out var st)) return st.GetInt32();
        }
        catch (JsonException) { return int.MaxValue; }
        return null;
    }

    private static void Trim(string path, Func<string, bool> keep)
    {
        if (!File.Exists(path)) return;
        var kept = File.ReadLines(path).Where(l => !string.IsNullOrWhiteSpace(l) && keep(l)).ToList();
        AtomicFile.WriteAllText(path, kept.Count == 0 ? "" : string.Join("\n", kept) + "\n");
    }

    public void Dispose()
    {
        _jsonl.Dispose();
        _csv.Dispose();
    }
}
