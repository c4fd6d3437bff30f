using System.Text.Json.Serialization;
using BuPO.Hybrid.Data;
using BuPO.Hybrid.Llama;
using BuPO.Hybrid.RL;

namespace BuPO.Hybrid.Demo;

/// <summary>Settings of a held-out evaluation.</summary>
public sealed record DemoEvalSettings
{
    /// <summary>Samples per problem (K of avg@K, the largest k of pass@k).</summary>
    public int SamplesPerProblem { get; init; } = 8;
    public float Temperature { get; init; } = 1f;
    public int MaxTokens { get; init; } = 64;
    public uint Seed { get; init; } = 1;
    /// <summary>Most sequences decoded together.</summary>
    public int ParallelSequences { get; init; } = 64;
    /// <summary>llama.cpp threads (0 = all processors).</summary>
    public int Threads { get; init; }
}

/// <summary>The evaluation of one model on a problem set.</summary>
public sealed record DemoEvalResult
{
    [JsonPropertyName("model")] public required string Model { get; init; }
    [JsonPropertyName("dataset")] public required string Dataset { get; init; }
    [JsonPropertyName("problems")] public int Problems { get; init; }
    [JsonPropertyName("samples_per_problem")] public int SamplesPerProblem { get; init; }
    [JsonPropertyName("temperature")] public double Temperature { get; init; }
    /// <summary>avg@K: the mean over problems of the share of correct samples.</summary>
    [JsonPropertyName("avg_at_k")] public double AvgAtK { get; init; }
    /// <summary>pass@k for k = 1, 2, 4, ... K.</summary>
    [JsonPropertyName("pass_at_k")] public required IReadOnlyDictionary<string, double> PassAtK { get; init; }
    /// <summary>Share of samples that ended with EOS (not cut at the token limit).</summary>
    [JsonPropertyName("finished_share")] public double FinishedShare { get; init; }
    /// <summary>Share of samples holding a <c>\boxed{}</c> answer.</summary>
    [JsonPropertyName("boxed_share")] public double BoxedShare { get; init; }
    [JsonPropertyName("mean_response_tokens")] public double MeanResponseTokens { get; init; }
    [JsonPropertyName("seconds")] public double Seconds { get; init; }
    /// <summary>A few (problem, response, correct) examples.</summary>
    [JsonPropertyName("examples")] public required IReadOnlyList<DemoEvalExample> Examples { get; init; }
}

/// <summary>One sampled answer.</summary>
public sealed record DemoEvalExample(
    [property: JsonPropertyName("problem")] string Problem,
    [property: JsonPropertyName("answer")] string Answer,
    [property: JsonPropertyName("response")] string Response,
    [property: JsonPropertyName("correct")] bool Correct);

/// <summary>
/// Samples K answers per problem from a GGUF with llama.cpp (temperature T, no truncation) and scores them with the
/// math verifier: avg@K and pass@k (spec section 7).
/// </summary>
public static class DemoEvaluator
{
    public static DemoEvalResult Evaluate(string gguf, string dataset, IReadOnlyList<PromptItem> problems, DemoEvalSettings settings,
        Action<int, int>? progress = null, CancellationToken cancellation = default)
    {
        if (problems.Count == 0) throw new BupoException("evaluation: no problems");
        if (settings.SamplesPerProblem < 1) throw new BupoException($"evaluation: samples per problem must be >= 1, got {settings.SamplesPerProblem}");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var k = settings.SamplesPerProblem;
        var jobs = new List<(int Problem, int[] Prompt)>(problems.Count * k);
        for (var i = 0; i < problems.Count; i++)
        {
            var prompt = CharVocabulary.Encode(ArithmeticTaskGenerator.FormatPrompt(problems[i].Problem));
            for (var s = 0; s < k; s++) jobs.Add((i, prompt));
        }
        var parallel = Math.Max(1, Math.Min(settings.ParallelSequences, jobs.Count));
        var maxPrompt = jobs.Max(j => j.Prompt.Length);
        using var model = LlamaModel.Load(gguf, new LlamaModelOptions { GpuLayers = 0 });
        using var context = LlamaContext.Create(model, new LlamaContextOptions
        {
            // One KV stream per sequence: with a unified cache every token would attend over all sequences' cells.
            ContextSize = parallel * (maxPrompt + settings.MaxTokens + 8),
            BatchSize = Math.Max(512, parallel),
            UBatchSize = 512,
            MaxSequences = parallel,
            UnifiedKvCache = false,
            Threads = settings.Threads,
            Seed = settings.Seed,
        });
        var generator = new LlamaGenerator(context);
        var verifier = new MathAnswerVerifier();
        var correct = new int[problems.Count];
        var examples = new List<DemoEvalExample>();
        long finished = 0, boxed = 0, tokens = 0;
        for (var start = 0; start < jobs.Count; start += parallel)
        {
            cancellation.ThrowIfCancellationRequested();
            var chunk = jobs.Skip(start).Take(parallel).ToList();
            var outputs = generator.Generate(chunk.Select(j => j.Prompt).ToArray(), new GenerationOptions
            {
                MaxTokens = settings.MaxTokens,
                Sampling = new LlamaSamplerOptions { Temperature = settings.Temperature, Seed = unchecked(settings.Seed + (uint)start) },
            });
            for (var i = 0; i < chunk.Count; i++)
            {
                var item = problems[chunk[i].Problem];
                var o = outputs[i];
                var v = verifier.Verify(o.Text, item.Answer);
                if (v.Correct) correct[chunk[i].Problem]++;
                if (o.StopReason == GenerationStopReason.EndOfGeneration) finished++;
                if (v.Source == AnswerSource.Boxed) boxed++;
                tokens += o.Tokens.Length;
                if (examples.Count < 12 && (start + i) % k == 0) examples.Add(new DemoEvalExample(item.Problem, item.Answer ?? "", o.Text, v.Correct));
            }
            progress?.Invoke(Math.Min(jobs.Count, start + parallel), jobs.Count);
        }
        var outcomes = problems.Select((p, i) => new ProblemOutcome(p.Id, k, correct[i])).ToList();
        var score = DatasetScore.Aggregate(dataset, outcomes);
        return new DemoEvalResult
        {
            Model = gguf,
            Dataset = dataset,
            Problems = problems.Count,
            SamplesPerProblem = k,
            Temperature = settings.Temperature,
            AvgAtK = score.AvgAtK,
            PassAtK = score.PassAtKByK.ToDictionary(kv => kv.Key.ToString(System.Globalization.CultureInfo.InvariantCulture), kv => kv.Value),
            FinishedShare = (double)finished / jobs.Count,
            BoxedShare = (double)boxed / jobs.Count,
            MeanResponseTokens = (double)tokens / jobs.Count,
            Seconds = clock.Elapsed.TotalSeconds,
            Examples = examples,
        };
    }
}
