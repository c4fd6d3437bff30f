using System.CommandLine;
using System.Text.Json;
using BuPO.Hybrid.Llama;
using BuPO.Hybrid.Rollout;

namespace BuPO.Hybrid.Cli.Commands;

/// <summary>
/// <c>bupo-hybrid generate MODEL.gguf --prompt TEXT</c>: samples continuations with the rollout engine (llama.cpp);
/// <c>--parallel P</c> prefills the prompt once and decodes P samples of it together in one batch.
/// </summary>
public static class GenerateCommand
{
    public static Command Create()
    {
        var model = new Argument<FileInfo>("model") { Description = "GGUF model file" };
        var prompt = new Option<string>("--prompt") { Description = "Prompt text (BOS is added when the model asks for it; special tokens are parsed)", Required = true };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Most tokens generated per sequence", DefaultValueFactory = _ => 64 };
        var temperature = new Option<float>("--temperature") { Description = "Sampling temperature; 0 = greedy", DefaultValueFactory = _ => 0.8f };
        var seed = new Option<uint?>("--seed") { Description = "Random seed (sequence i draws from its own stream derived from the seed and i); default: random, printed with --json" };
        var parallel = new Option<int>("--parallel") { Description = $"Copies of the prompt decoded together in one batch (1..{RolloutEngine.MaxParallel})", DefaultValueFactory = _ => 1 };
        var json = new Option<bool>("--json") { Description = "Print token ids, log-probs and text as JSON" };
        var libDir = new Option<string?>("--llama-lib-dir") { Description = $"Folder of the llama.cpp libraries (default: ${LlamaBackend.LibDirEnvironmentVariable}, then the bundled build)" };
        var gpuLayers = new Option<int>("--gpu-layers") { Description = "Layers to offload to the GPU (-1 = all; needs a GPU build of llama.cpp)", DefaultValueFactory = _ => -1 };
        var threads = new Option<int>("--threads") { Description = "CPU threads (0 = all processors)", DefaultValueFactory = _ => 0 };
        var cmd = new Command("generate", "Generate text from a GGUF model with llama.cpp")
        {
            model, prompt, maxTokens, temperature, seed, parallel, json, libDir, gpuLayers, threads,
        };
        cmd.SetAction(parse => Run(
            parse.GetValue(model)!, parse.GetValue(prompt)!, parse.GetValue(maxTokens), parse.GetValue(temperature), parse.GetValue(seed),
            parse.GetValue(parallel), parse.GetValue(json), parse.GetValue(libDir), parse.GetValue(gpuLayers), parse.GetValue(threads),
            parse.InvocationConfiguration.Output));
        return cmd;
    }

    private static int Run(FileInfo file, string prompt, int maxTokens, float temperature, uint? seed, int parallel, bool json,
        string? libDir, int gpuLayers, int threads, TextWriter stdout)
    {
        // Check everything cheap before llama.cpp sees anything: a bad file must never reach the native loader.
        LlamaModel.ValidateGgufFile(file.FullName);
        if (maxTokens < 1) throw new BupoException($"--max-tokens must be >= 1, got {maxTokens}");
        if (!float.IsFinite(temperature) || temperature < 0) throw new BupoException($"--temperature must be >= 0, got {temperature}");
        if (parallel is < 1 or > RolloutEngine.MaxParallel) throw new BupoException($"--parallel must be in [1, {RolloutEngine.MaxParallel}] (llama.cpp's limit on sequences), got {parallel}");
        if (threads < 0) throw new BupoException($"--threads must be >= 0, got {threads}");
        if (gpuLayers < -1) throw new BupoException($"--gpu-layers must be >= -1, got {gpuLayers}");

        using var engine = new RolloutEngine(file.FullName, new RolloutEngineOptions
        {
            Parallel = parallel, Threads = threads, GpuLayers = gpuLayers, LlamaLibDir = libDir,
        });
        var promptIds = engine.Model.Vocab.Encode(prompt, addSpecial: true, parseSpecial: true);
        if (promptIds.Length == 0) throw new BupoException("--prompt gives no tokens (and the model adds no BOS): give a non-empty prompt");
        int trainContext = engine.Model.TrainContextSize;
        if (trainContext > 0 && promptIds.Length + maxTokens > trainContext)
            throw new BupoException($"prompt ({promptIds.Length} tokens) + --max-tokens ({maxTokens}) exceed the model's context of {trainContext}");
        if ((long)parallel * (promptIds.Length + maxTokens) > int.MaxValue / 2) throw new BupoException($"--parallel {parallel} x {promptIds.Length + maxTokens} tokens is too large");
        uint usedSeed = seed ?? (uint)Random.Shared.NextInt64(0, uint.MaxValue);
        // One prompt, prefilled once and fanned out to its P samples: the rollout engine's own path.
        var results = engine.Generate(new RolloutRequest([promptIds], parallel, new RolloutSampling { Temperature = temperature, MaxTokens = maxTokens }, usedSeed));

        if (json)
        {
            var doc = new
            {
                model = file.FullName,
                prompt,
                prompt_tokens = promptIds,
                temperature,
                seed = usedSeed,
                sequences = results.Select(r => new
                {
                    tokens = r.ResponseTokens,
                    text = r.Text,
                    logprobs = r.RawLogProbs,
                    sampling_logprobs = r.BehaviorLogProbs,
                    stop = r.Finish == FinishReason.EndOfSequence ? "eog" : "max_tokens",
                }),
            };
            stdout.WriteLine(JsonSerializer.Serialize(doc, JsonFormat.Indented));
        }
        else
        {
            for (int i = 0; i < results.Count; i++)
            {
                var r = results[i];
                if (results.Count > 1) stdout.WriteLine($"--- sequence {i} ({r.ResponseTokens.Length} tokens, {(r.Finish == FinishReason.EndOfSequence ? "stopped at end of generation" : "max tokens")}) ---");
                stdout.WriteLine(prompt + r.Text);
            }
        }
        return 0;
    }
}
