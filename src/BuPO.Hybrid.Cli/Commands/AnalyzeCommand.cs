using BuPO.Hybrid.Reports;
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using BuPO.Hybrid.Analysis;
using BuPO.Hybrid.Data;
using BuPO.Hybrid.Gguf;
using BuPO.Hybrid.Llama;
using BuPO.Hybrid.Model;
using Spectre.Console;

namespace BuPO.Hybrid.Cli.Commands;

/// <summary>
/// <c>bupo-hybrid analyze --model M.gguf --prompt TEXT</c>: entropies of the internal layer, attention and FFN
/// policies per block, the ΔH metrics and the boundary layer (docs/ANALYZE.md). Library: <see cref="InternalEntropyAnalyzer"/>.
/// </summary>
public static class AnalyzeCommand
{
    public static Command Create()
    {
        var model = new Option<FileInfo>("--model", "-m") { Description = "GGUF model file (llama, qwen2 or qwen3)", Required = true };
        var prompt = new Option<string[]>("--prompt") { Description = "Prompt text (repeatable)", AllowMultipleArgumentsPerToken = false };
        var prompts = new Option<FileInfo?>("--prompts") { Description = "File of prompts: one per line, or JSONL (the problem field: --field, else detected)" };
        var field = new Option<string?>("--field") { Description = "JSONL field holding the prompt text (--prompts/--dataset)" };
        var dataset = new Option<string?>("--dataset") { Description = $"Dataset name ({string.Join(", ", PromptDataset.KnownNames.Keys)}) or a JSONL file" };
        var split = new Option<string?>("--split") { Description = "Split file of a named dataset (default: test; train for deepmath5k)" };
        var dataDir = new Option<string?>("--data-dir") { Description = "Folder holding <dataset>/<split>.jsonl (default: BUPO_DATA_DIR, then ../shared/data)" };
        var limit = new Option<int?>("--limit") { Description = "Use only the first N prompts of --prompts/--dataset" };
        var chat = new Option<bool>("--chat") { Description = "Apply the model's chat template (user turn + assistant opening)" };
        var system = new Option<string?>("--system") { Description = "System message for --chat" };
        var generate = new Option<int>("--generate") { Description = "Also sample up to N response tokens per prompt (llama.cpp) and analyze prompt + response", DefaultValueFactory = _ => 0 };
        var temperature = new Option<float>("--temperature") { Description = "Sampling temperature for --generate (top-p 1, no top-k)", DefaultValueFactory = _ => 1f };
        var seed = new Option<uint>("--seed") { Description = "Sampling seed (prompt i uses seed + i)", DefaultValueFactory = _ => 42u };
        var positions = new Option<string>("--positions") { Description = "Positions averaged: all, prompt, or response (the positions that produced the response tokens)", DefaultValueFactory = _ => "all" };
        OneOf(positions, "all", "prompt", "response");
        var norm = new Option<string>("--norm") { Description = "none: softmax(h E_u^T), BuPO's internal policy; final: final RMSNorm first (logit lens)", DefaultValueFactory = _ => "none" };
        OneOf(norm, "none", "final");
        var layers = new Option<string?>("--layers") { Description = "Blocks to analyze, 0-based, e.g. 0,3,5-8 (default: all)" };
        var engine = new Option<string>("--engine") { Description = "llama: llama.cpp graph captures; torch: the TorchSharp trainer model", DefaultValueFactory = _ => "llama" };
        OneOf(engine, "llama", "torch");
        var device = new Option<string>("--device") { Description = "Torch device of the unembedding and the torch engine: cpu, cuda, cuda:N", DefaultValueFactory = _ => "cpu" };
        var protocol = new Option<string?>("--protocol") { Description = "paper: chat template, responses sampled at T = 1.0 (--generate, default 512) to --dataset problems, response positions only, norm none" };
        OneOf(protocol, "paper");
        var tau = new Option<double>("--tau") { Description = "Boundary layer rule threshold on ΔH_FFN (nats)", DefaultValueFactory = _ => BoundaryLayerRule.DefaultTau };
        var perToken = new Option<bool>("--per-token") { Description = "Also write per-position layer entropies (JSON per_token)" };
        var outDir = new Option<DirectoryInfo?>("--out") { Description = "Write analysis.json, analysis.csv and PNG/SVG plots into this folder" };
        var name = new Option<string>("--name") { Description = "Base name of the files written by --out (NAME.json, NAME_entropy.png, ...)", DefaultValueFactory = _ => "analysis" };
        var json = new Option<FileInfo?>("--json") { Description = "Write the JSON result to this file" };
        var kvType = new Option<string>("--kv-type") { Description = "llama.cpp KV cache type: f32 (flash attention off: float32 attention, exact to ~1e-6 nats), or the rollouts' precision: default (llama.cpp's F16), f16, bf16, q8_0", DefaultValueFactory = _ => "f32" };
        OneOf(kvType, "default", "f32", "f16", "bf16", "q8_0");
        var ctx = new Option<int?>("--ctx") { Description = "Longest sequence (prompt + response) in tokens (default: the model's training context)" };
        var chunk = new Option<int>("--chunk-size") { Description = "Positions per unembedding chunk", DefaultValueFactory = _ => 1024 };
        var llamaBatch = new Option<int>("--llama-batch") { Description = "Positions per llama.cpp decode in the llama engine", DefaultValueFactory = _ => 512 };
        var threads = new Option<int>("--threads") { Description = "CPU threads for llama.cpp (0 = all processors)", DefaultValueFactory = _ => 0 };
        var gpuLayers = new Option<int>("--gpu-layers") { Description = "Layers llama.cpp offloads to the GPU (-1 = all; needs a GPU build of llama.cpp)", DefaultValueFactory = _ => -1 };
        var libDir = new Option<string?>("--llama-lib-dir") { Description = $"Folder of the llama.cpp libraries (default: ${LlamaBackend.LibDirEnvironmentVariable}, then the bundled build)" };

        var cmd = new Command("analyze", "Entropy of a model's internal policies per block (layer, attention, FFN), their changes and the boundary layer")
        {
            model, prompt, prompts, field, dataset, split, dataDir, limit, chat, system, generate, temperature, seed, positions, norm, layers,
            engine, device, protocol, tau, perToken, outDir, name, json, kvType, ctx, chunk, llamaBatch, threads, gpuLayers, libDir,
        };
        cmd.SetAction(parse =>
        {
            bool Given(Option o) => parse.GetResult(o) is { Implicit: false };
            var a = new Args
            {
                Model = parse.GetValue(model)!, Prompts = parse.GetValue(prompt) ?? [], PromptFile = parse.GetValue(prompts), Field = parse.GetValue(field),
                Dataset = parse.GetValue(dataset), Split = parse.GetValue(split), DataDir = parse.GetValue(dataDir), Limit = parse.GetValue(limit),
                Chat = parse.GetValue(chat), System = parse.GetValue(system), Generate = parse.GetValue(generate), GenerateGiven = Given(generate),
                Temperature = parse.GetValue(temperature), TemperatureGiven = Given(temperature), Seed = parse.GetValue(seed),
                Positions = parse.GetValue(positions)!, PositionsGiven = Given(positions), Norm = parse.GetValue(norm)!, NormGiven = Given(norm),
                Layers = parse.GetValue(layers), Engine = parse.GetValue(engine)!, Device = parse.GetValue(device)!, Protocol = parse.GetValue(protocol),
                Tau = parse.GetValue(tau), PerToken = parse.GetValue(perToken), OutDir = parse.GetValue(outDir), Name = parse.GetValue(name)!, Json = parse.GetValue(json),
                KvType = parse.GetValue(kvType)!, Ctx = parse.GetValue(ctx), ChunkSize = parse.GetValue(chunk), LlamaBatch = parse.GetValue(llamaBatch),
                Threads = parse.GetValue(threads), GpuLayers = parse.GetValue(gpuLayers), LibDir = parse.GetValue(libDir),
            };
            return Run(a, parse.InvocationConfiguration.Output, parse.InvocationConfiguration.Error);
        });
        return cmd;
    }

    /// <summary>Restricts an option to fixed values with a one-line parse error (AcceptOnlyFromAmong's spans several lines).</summary>
    private static void OneOf(Option option, params string[] values)
    {
        option.Validators.Add(r =>
        {
            foreach (var token in r.Tokens)
                if (!values.Contains(token.Value))
                    r.AddError($"{option.Name} {token.Value}: expected one of {string.Join(", ", values)}");
        });
        option.CompletionSources.Add(values);
    }

    private sealed record Args
    {
        public required FileInfo Model { get; init; }
        public required string[] Prompts { get; init; }
        public FileInfo? PromptFile { get; init; }
        public string? Field { get; init; }
        public string? Dataset { get; init; }
        public string? Split { get; init; }
        public string? DataDir { get; init; }
        public int? Limit { get; init; }
        public bool Chat { get; init; }
        public string? System { get; init; }
        public int Generate { get; init; }
        public bool GenerateGiven { get; init; }
        public float Temperature { get; init; }
        public bool TemperatureGiven { get; init; }
        public uint Seed { get; init; }
        public required string Positions { get; init; }
        public bool PositionsGiven { get; init; }
        public required string Norm { get; init; }
        public bool NormGiven { get; init; }
        public string? Layers { get; init; }
        public required string Engine { get; init; }
        public required string Device { get; init; }
        public string? Protocol { get; init; }
        public double Tau { get; init; }
        public bool PerToken { get; init; }
        public DirectoryInfo? OutDir { get; init; }
        public required string Name { get; init; }
        public FileInfo? Json { get; init; }
        public required string KvType { get; init; }
        public int? Ctx { get; init; }
        public int ChunkSize { get; init; }
        public int LlamaBatch { get; init; }
        public int Threads { get; init; }
        public int GpuLayers { get; init; }
        public string? LibDir { get; init; }
    }

    private static int Run(Args a, TextWriter stdout, TextWriter stderr)
    {
        // Cheap checks first: a bad file never reaches llama.cpp, a bad option never waits for a model load.
        LlamaModel.ValidateGgufMagic(a.Model.FullName);
        var config = TransformerConfig.FromGguf(a.Model.FullName); // names an unsupported architecture, then checks the metadata
        var sources = (a.Prompts.Length > 0 ? 1 : 0) + (a.PromptFile != null ? 1 : 0) + (a.Dataset != null ? 1 : 0);
        if (sources != 1) throw new BupoException("give the inputs with exactly one of --prompt, --prompts FILE or --dataset NAME_OR_PATH");
        if (a.Limit is <= 0) throw new BupoException($"--limit must be a positive number of prompts, got {a.Limit}");
        if (a.Limit != null && a.Prompts.Length > 0) throw new BupoException("--limit applies to --prompts and --dataset, not to --prompt");
        if (a.Field != null && a.Prompts.Length > 0) throw new BupoException("--field applies to --prompts and --dataset, not to --prompt");
        if (a.Name.Length == 0 || a.Name.IndexOfAny(Path.GetInvalidFileNameChars()) >= 0 || a.Name is "." or "..")
            throw new BupoException($"--name '{a.Name}': not a plain file name");
        var layers = a.Layers is null ? null : AnalyzeOptions.ParseLayers(a.Layers, config.LayerCount);
        ModelDevice.Parse(a.Device); // an unknown or unavailable device fails before any model is loaded

        var options = new AnalyzeOptions
        {
            ModelPath = a.Model.FullName,
            Engine = a.Engine == "torch" ? AnalysisEngine.Torch : AnalysisEngine.Llama,
            Norm = a.Norm == "final" ? LensNorm.Final : LensNorm.Identity,
            Layers = layers,
            Positions = Enum.Parse<AnalysisPositions>(a.Positions, ignoreCase: true),
            Device = a.Device,
            ChunkSize = a.ChunkSize,
            PerToken = a.PerToken,
            Tau = a.Tau,
            Chat = a.Chat,
            SystemPrompt = a.System,
            GenerateTokens = a.Generate,
            Temperature = a.Temperature,
            Seed = a.Seed,
            ContextSize = a.Ctx,
            KvCacheType = a.KvType switch { "f32" => GgmlType.F32, "f16" => GgmlType.F16, "bf16" => GgmlType.BF16, "q8_0" => GgmlType.Q8_0, _ => null },
            LlamaBatchSize = a.LlamaBatch,
            Threads = a.Threads,
            GpuLayers = a.GpuLayers,
        };
        if (a.Protocol == "paper")
        {
            if (a.Dataset is null) throw new BupoException("--protocol paper samples responses to the problems of --dataset: give --dataset NAME_OR_PATH");
            if (a.NormGiven && options.Norm != LensNorm.Identity) throw new BupoException("--protocol paper uses --norm none");
            if (a.PositionsGiven && options.Positions != AnalysisPositions.Response) throw new BupoException("--protocol paper analyzes --positions response");
            if (a.TemperatureGiven && a.Temperature != 1f) throw new BupoException("--protocol paper samples at --temperature 1.0");
            if (a.GenerateGiven && a.Generate < 1) throw new BupoException("--protocol paper needs --generate N >= 1");
            options = options.WithPaperProtocol(a.GenerateGiven ? a.Generate : 512, a.System);
        }
        options.Validate();

        IReadOnlyList<PromptItem> items;
        if (a.Prompts.Length > 0)
        {
            for (var i = 0; i < a.Prompts.Length; i++)
                if (string.IsNullOrWhiteSpace(a.Prompts[i])) throw new BupoException($"--prompt {i}: the prompt is empty");
            items = a.Prompts.Select((p, i) => new PromptItem($"prompt-{i}", p, null)).ToArray();
        }
        else if (a.PromptFile != null)
        {
            if (!a.PromptFile.Exists) throw new BupoException($"--prompts: file not found: {a.PromptFile.FullName}");
            items = PromptDataset.Load(a.PromptFile.FullName, limit: a.Limit, options: new PromptDatasetOptions { ProblemField = a.Field });
        }
        else items = PromptDataset.Load(a.Dataset!, a.Split, a.Limit, new PromptDatasetOptions { DataDir = a.DataDir, ProblemField = a.Field });

        LlamaBackend.Initialize(a.LibDir, minLevel: LlamaLogLevel.Error); // load-time warnings of llama.cpp are noise here
        if (a.Threads > 0) TorchSharp.torch.set_num_threads(a.Threads);
        var console = CliConsole.Create(stdout);
        var keepPerToken = a.PerToken || a.OutDir != null; // the heatmap needs them
        options = options with { PerToken = keepPerToken };

        var timer = new StageTimer();
        AnalysisResult result;
        if (console.Profile.Capabilities.Interactive)
        {
            AnalysisResult? r = null;
            console.Progress()
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
                .Start(pctx =>
                {
                    var tasks = new Dictionary<string, ProgressTask>();
                    r = InternalEntropyAnalyzer.Run(options, items, new SyncProgress<AnalyzeProgress>(p =>
                    {
                        timer.Report(p);
                        if (!tasks.TryGetValue(p.Stage, out var t))
                            tasks[p.Stage] = t = pctx.AddTask(p.Stage == "generate" ? "generating responses" : "analyzing prompts", maxValue: p.Total);
                        t.Value = p.Done;
                        t.Description = $"{(p.Stage == "generate" ? "generating responses" : "analyzing prompts")} ({p.Tokens} tokens)";
                    }));
                });
            result = r!;
        }
        else result = InternalEntropyAnalyzer.Run(options, items, new SyncProgress<AnalyzeProgress>(timer.Report));

        if (options.Engine == AnalysisEngine.Llama && options.KvCacheType != GgmlType.F32)
            console.WriteLine($"note: --kv-type {a.KvType}: llama.cpp's attention reads a {(options.KvCacheType?.ToString() ?? "F16")} KV cache, as the rollouts do; entropies can differ from float32 by ~1e-3 nats (the default f32 is exact to ~1e-6)");
        WriteTable(console, result, config.LayerCount);
        var analyzed = result.TokenIds.Sum(t => (long)t.Length);
        console.WriteLine(FormattableString.Invariant(
            $"{result.TokenIds.Count} sequence(s), {analyzed} tokens decoded, {result.PositionCount} positions averaged; analyze {timer.AnalyzeSeconds:F2} s ({analyzed / Math.Max(timer.AnalyzeSeconds, 1e-9):F0} tokens/s, engine {result.Engine}, device {options.Device})")
            + (timer.GenerateSeconds > 0 ? FormattableString.Invariant($"; generate {timer.GenerateSeconds:F2} s") : ""));

        if (a.OutDir != null)
        {
            var files = AnalysisReportWriter.WriteAll(result, a.OutDir.FullName, a.Name, perTokenInJson: a.PerToken);
            console.WriteLine($"wrote {files.Count} files to {a.OutDir.FullName}");
        }
        if (a.Json != null)
        {
            var dir = a.Json.Directory;
            if (dir != null && !dir.Exists) dir.Create();
            AnalysisReportWriter.WriteJson(a.PerToken ? result : result with { PerToken = null }, a.Json.FullName);
            console.WriteLine($"wrote {a.Json.FullName}");
        }
        return 0;
    }

    private static void WriteTable(IAnsiConsole console, AnalysisResult r, int nLayer)
    {
        static string F(double v) => double.IsFinite(v) ? v.ToString("F4", CultureInfo.InvariantCulture) : "-";
        static string D(double v) => double.IsFinite(v) ? v.ToString("+0.0000;-0.0000;0.0000", CultureInfo.InvariantCulture) : "-";
        var table = new Table
        {
            Title = new TableTitle(Markup.Escape($"{Path.GetFileName(r.Model)} ({r.Architecture}, {nLayer} blocks): internal policy entropy in nats, " +
                                                      $"norm {r.Norm}, engine {r.Engine}, positions {r.Positions}"))
        };
        table.AddColumns("block", "H layer", "std", "H attn", "H ffn", "H(X)", "H(Y)", "ΔH layer", "ΔH attn", "ΔH ffn");
        foreach (var c in table.Columns.Skip(1)) c.RightAligned();
        foreach (var l in r.Layers)
        {
            var mark = l.Index == r.BoundaryLayer ? "*" : "";
            table.AddRow(Markup.Escape($"{l.Index}{mark}"), F(l.Entropy), F(l.EntropyStd), F(l.AttentionEntropy), F(l.FfnEntropy),
                F(l.AttentionInputEntropy), F(l.FfnInputEntropy), D(l.DeltaLayer), D(l.DeltaAttention), D(l.DeltaFfn));
        }
        console.Write(table);
        console.WriteLine("H layer/attn/ffn: entropy of the policy read off H^k, A^k, F^k; H(X), H(Y): the normalized attention and FFN inputs; " +
                          "ΔH attn = H attn - H(X), ΔH ffn = H ffn - H(Y), ΔH layer = H^k - H^{k-1}");
        console.WriteLine($"embedding lens entropy {F(r.EmbeddingEntropy)}, final policy entropy {F(r.FinalEntropy)} nats");
        console.WriteLine($"boundary layer (0-based, * above): {r.BoundaryLayer} ({r.BoundaryLayerReason})");
    }

    /// <summary>Wall time of the generate and analyze stages, from the progress reports.</summary>
    private sealed class StageTimer
    {
        private readonly Stopwatch _watch = Stopwatch.StartNew();
        private string? _stage;
        private double _stageStart;
        public double GenerateSeconds { get; private set; }
        public double AnalyzeSeconds { get; private set; }

        public void Report(AnalyzeProgress p)
        {
            var now = _watch.Elapsed.TotalSeconds;
            if (_stage != p.Stage) { _stage = p.Stage; _stageStart = now; }
            if (p.Stage == "generate") GenerateSeconds = now - _stageStart;
            else AnalyzeSeconds = now - _stageStart;
        }
    }
}
