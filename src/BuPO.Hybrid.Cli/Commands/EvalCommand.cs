using System.Globalization;
using System.CommandLine;
using System.Text.Json;
using BuPO.Hybrid.Data;
using BuPO.Hybrid.Llama;
using Spectre.Console;
using BuPO.Hybrid.Rollout;
using BuPO.Hybrid.RL.Evaluation;
using BuPO.Hybrid.RL.Training;

namespace BuPO.Hybrid.Cli.Commands;

/// <summary>
/// <c>bupo-hybrid eval --model M.gguf --dataset D [--dataset D2 ...] --k 16</c>: avg@K and unbiased pass@k per dataset
/// (spec section 7), K samples per problem from the rollout engine, each scored by the math verifier.
/// </summary>
public static class EvalCommand
{
    public static Command Create()
    {
        var model = new Option<FileInfo>("--model") { Description = "GGUF model to evaluate", Required = true };
        var dataset = new Option<string[]>("--dataset")
        {
            Description = $"Dataset: one of {string.Join(", ", PromptDataset.KnownNames.Keys)} (under --data-dir) or a JSONL file with problem/answer fields; repeatable",
            Required = true, AllowMultipleArgumentsPerToken = true,
        };
        var k = new Option<int>("--k") { Description = "Samples per problem (K of avg@K)", DefaultValueFactory = _ => 16 };
        var limit = new Option<int?>("--limit") { Description = "Only the first N problems of each dataset" };
        var template = new Option<string>("--template")
        {
            Description = $"Prompt template: {string.Join(", ", PromptTemplates.Names)}, or auto (qwen3_no_thinking for qwen3, chat when the model has a template, else boxed)",
            DefaultValueFactory = _ => "auto",
        };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Most tokens per response", DefaultValueFactory = _ => 1024 };
        var temperature = new Option<double>("--temperature") { Description = "Sampling temperature (0 = greedy)", DefaultValueFactory = _ => 1.0 };
        var topP = new Option<double>("--top-p") { Description = "Nucleus sampling (1 = off)", DefaultValueFactory = _ => 1.0 };
        var topK = new Option<int>("--top-k") { Description = "Top-k sampling (0 = off)", DefaultValueFactory = _ => 0 };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the rollouts", DefaultValueFactory = _ => 0UL };
        var parallel = new Option<int>("--parallel") { Description = $"Sequences decoding together (1..{RolloutEngine.MaxParallel})", DefaultValueFactory = _ => 64 };
        var passK = new Option<string?>("--pass-k") { Description = "k values of pass@k, comma-separated (default 1,2,4,... up to K)" };
        var json = new Option<FileInfo?>("--json") { Description = "Also write the results (per dataset and per problem) as JSON to this file" };
        var dataDir = new Option<string?>("--data-dir") { Description = "Folder of the named datasets (default: BUPO_DATA_DIR, then ../shared/data)" };
        var threads = new Option<int>("--threads") { Description = "CPU threads (0 = all processors)", DefaultValueFactory = _ => 0 };
        var gpuLayers = new Option<int>("--gpu-layers") { Description = "Layers to offload to the GPU (-1 = all; needs a GPU build of llama.cpp)", DefaultValueFactory = _ => 0 };
        var libDir = new Option<string?>("--llama-lib-dir") { Description = $"Folder of the llama.cpp libraries (default: ${LlamaBackend.LibDirEnvironmentVariable}, then the bundled build)" };
        var policyLayer = new Option<int?>("--policy-layer")
        {
            Description = "Sample from block k's internal layer policy softmax(h_k E_u^T / T) (no final norm, as BuPO's IPA trains it) with the torch engine instead of llama.cpp's final policy (0-based block; no top-p/top-k)",
        };
        var device = new Option<string>("--device") { Description = "Torch device of --policy-layer: cpu, cuda, cuda:N", DefaultValueFactory = _ => "cpu" };
        var cmd = new Command("eval", "avg@K and pass@k of a GGUF model on math datasets (llama.cpp rollouts, math answer verifier)")
        {
            model, dataset, k, limit, template, maxTokens, temperature, topP, topK, seed, parallel, passK, json, dataDir, threads, gpuLayers, libDir,
            policyLayer, device,
        };
        cmd.SetAction(parse =>
        {
            var file = parse.GetValue(model)!;
            int kk = parse.GetValue(k);
            if (kk < 1) throw new BupoException($"--k must be >= 1, got {kk}");
            var ks = parse.GetValue(passK) is { } list ? CliConsole.ParseIntList("--pass-k", list) : null;
            if (ks != null)
                foreach (var x in ks)
                    if (x < 1 || x > kk) throw new BupoException($"--pass-k: {x} is outside [1, --k {kk}]");
            int mt = parse.GetValue(maxTokens), par = parse.GetValue(parallel), th = parse.GetValue(threads), gl = parse.GetValue(gpuLayers);
            if (mt < 1) throw new BupoException($"--max-tokens must be >= 1, got {mt}");
            if (par is < 1 or > RolloutEngine.MaxParallel) throw new BupoException($"--parallel must be in [1, {RolloutEngine.MaxParallel}], got {par}");
            if (th < 0) throw new BupoException($"--threads must be >= 0, got {th}");
            if (gl < -1) throw new BupoException($"--gpu-layers must be >= -1, got {gl}");
            if (parse.GetValue(limit) is <= 0) throw new BupoException($"--limit must be a positive number of problems, got {parse.GetValue(limit)}");
            var sampling = new RolloutSampling { MaxTokens = mt, Temperature = parse.GetValue(temperature), TopP = parse.GetValue(topP), TopK = parse.GetValue(topK) };
            try { sampling.Validate(); }
            catch (BupoException e) { throw new BupoException("--" + e.Message); }
            var layer = parse.GetValue(policyLayer);
            if (layer is < 0) throw new BupoException($"--policy-layer must be a block index >= 0, got {layer}");
            if (layer != null && (sampling.TopP < 1 || sampling.TopK > 0)) throw new BupoException("--policy-layer samples the whole internal distribution: leave --top-p and --top-k off");
            // Without --policy-layer, llama.cpp samples and --device would be silently ignored.
            if (layer == null && parse.GetResult(device) is { Implicit: false })
                throw new BupoException("--device applies to --policy-layer (the torch engine); llama.cpp's rollouts use --gpu-layers");
            var tmpl = parse.GetValue(template)!;
            if (!tmpl.Equals("auto", StringComparison.OrdinalIgnoreCase)) _ = PromptTemplates.Format(tmpl, "x", _ => "x");   // unknown name: error now

            // Datasets first (cheap, and a typo must not wait for the model).
            var data = new PromptDatasetOptions { DataDir = parse.GetValue(dataDir) };
            var sets = new List<(string Name, IReadOnlyList<PromptItem> Items)>();
            foreach (var d in parse.GetValue(dataset)!)
            {
                var items = PromptDataset.Load(d, limit: parse.GetValue(limit), options: data);
                var (_, known) = PromptDataset.Resolve(d, dataDir: data.DataDir);
                var missing = items.FirstOrDefault(i => i.Answer == null);
                if (missing != null) throw new BupoException($"dataset {d}: problem '{missing.Id}' has no reference answer (eval needs an answer field)");
                sets.Add((known ? d.ToLowerInvariant() : Path.GetFileNameWithoutExtension(d), items));
            }
            LlamaModel.ValidateGgufFile(file.FullName);
            LlamaBackend.Initialize(parse.GetValue(libDir), minLevel: LlamaLogLevel.Error);
            var options = new EvalOptions { K = kk, Template = tmpl, Sampling = sampling, Seed = parse.GetValue(seed), PassKs = ks };
            var engineOptions = new RolloutEngineOptions { Parallel = par, Threads = th, GpuLayers = gl };
            return Run(file.FullName, sets, options, engineOptions, parse.GetValue(json), parse.InvocationConfiguration.Output, layer, parse.GetValue(device)!);
        });
        return cmd;
    }

    private static int Run(string modelPath, List<(string Name, IReadOnlyList<PromptItem> Items)> sets, EvalOptions options,
        RolloutEngineOptions engineOptions, FileInfo? json, TextWriter stdout, int? policyLayer = null, string device = "cpu")
    {
        var console = CliConsole.Create(stdout);
        using var engine = new RolloutEngine(modelPath, engineOptions);
        BuPO.Hybrid.Model.TransformerModel? torchModel = null;
        TorchPolicySampler? layerSampler = null;
        if (policyLayer is { } pl)
        {
            var dev = BuPO.Hybrid.Model.ModelDevice.Parse(device);
            torchModel = BuPO.Hybrid.Model.TransformerModel.FromGguf(modelPath, dev);
            layerSampler = new TorchPolicySampler(torchModel, engine.Tokenizer, pl);
            console.WriteLine($"sampling block {pl}'s internal layer policy softmax(h_{pl} E_u^T / T) with the torch engine ({device})");
        }
        using var _ = torchModel;
        var template = PromptTemplates.Resolve(options.Template, engine);
        console.WriteLine($"model: {modelPath} ({engine.Model.Architecture}, {engine.Model.Description})");
        console.WriteLine($"template {template}, K = {options.K}, temperature {CliConsole.F(options.Sampling.Temperature, "0.###")}, " +
                          $"max tokens {options.Sampling.MaxTokens}, seed {options.Seed}, parallel {engineOptions.Parallel}");
        var results = new List<EvalResult>();
        foreach (var (name, items) in sets)
        {
            EvalResult? r = null;
            if (console.Profile.Capabilities.Interactive)
            {
                console.Progress()
                    .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
                    .Start(pctx =>
                    {
                        var task = pctx.AddTask($"{name}: {items.Count} problems x {options.K}", maxValue: items.Count * options.K);
                        r = Evaluator.Run(engine, name, items, options, new SyncProgress<int>(done => task.Value = done), generator: layerSampler);
                    });
            }
            else
            {
                r = Evaluator.Run(engine, name, items, options, generator: layerSampler);
            }
            results.Add(r!);
            console.WriteLine($"{name}: {r!.Stats.GeneratedTokens} tokens in {CliConsole.F(r.Stats.Seconds, "F1")} s ({CliConsole.F(r.Stats.TokensPerSecond, "F0")} tokens/s)");
        }

        var ks = results.SelectMany(r => r.Score.PassAtKByK.Keys).Distinct().Order().ToList();
        var table = new Table().AddColumns(new[] { "dataset", "problems", $"avg@{options.K}" }.Concat(ks.Select(x => $"pass@{x}")).Append("tokens").ToArray());
        foreach (var r in results)
        {
            var cells = new List<string> { r.Dataset, r.Score.Problems.ToString(CultureInfo.InvariantCulture), CliConsole.F(100 * r.Score.AvgAtK, "F2") };
            cells.AddRange(ks.Select(x => r.Score.PassAtKByK.TryGetValue(x, out var v) ? CliConsole.F(100 * v, "F2") : ""));
            cells.Add(r.Stats.GeneratedTokens.ToString(CultureInfo.InvariantCulture));
            table.AddRow(cells.ToArray());
        }
        if (results.Count > 1)
            table.AddRow(new[] { "average", "", CliConsole.F(100 * DatasetScore.MacroAverage(results.Select(r => r.Score).ToList()), "F2") }
                .Concat(ks.Select(_ => "")).Append("").ToArray());
        console.Write(table);

        if (json != null)
        {
            var doc = new
            {
                model = modelPath,
                template,
                k = options.K,
                seed = options.Seed,
                policy = policyLayer is { } l ? $"layer {l} (internal, torch)" : "final (llama.cpp)",
                sampling = new { temperature = options.Sampling.Temperature, top_p = options.Sampling.TopP, top_k = options.Sampling.TopK, max_tokens = options.Sampling.MaxTokens },
                average_avg_at_k = DatasetScore.MacroAverage(results.Select(r => r.Score).ToList()),
                datasets = results.Select(r => new
                {
                    name = r.Dataset,
                    problems = r.Score.Problems,
                    samples_per_problem = r.Score.SamplesPerProblem,
                    total_samples = r.Score.TotalSamples,
                    total_correct = r.Score.TotalCorrect,
                    avg_at_k = r.Score.AvgAtK,
                    pass_at_k = r.Score.PassAtKByK.ToDictionary(kv => kv.Key.ToString(CultureInfo.InvariantCulture), kv => kv.Value),
                    generated_tokens = r.Stats.GeneratedTokens,
                    seconds = r.Stats.Seconds,
                    tokens_per_second = r.Stats.TokensPerSecond,
                    per_problem = r.Problems.Select(p => new
                    {
                        id = p.Id,
                        answer = p.Reference,
                        correct = p.Outcome.Correct,
                        samples = p.Correct.Length,
                        correct_by_sample = p.Correct,
                        extracted = p.Extracted,
                        response_tokens = p.ResponseTokens,
                        finish = p.Finish.Select(f => f.ToString()).ToArray(),
                    }),
                }),
            };
            BuPO.Hybrid.AtomicFile.WriteAllText(json.FullName, JsonSerializer.Serialize(doc, JsonFormat.Indented));
            console.WriteLine($"wrote {json.FullName}");
        }
        return 0;
    }
}
