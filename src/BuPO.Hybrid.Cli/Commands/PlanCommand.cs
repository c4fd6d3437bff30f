using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using BuPO.Hybrid.Cli.Commands.Bench;
using BuPO.Hybrid.Gguf;
using BuPO.Hybrid.Llama;
using BuPO.Hybrid.RL.Training;

namespace BuPO.Hybrid.Cli.Commands;

/// <summary>
/// <c>bupo-hybrid plan --model M.gguf [--device cuda] [--memory 24GiB] [train options]</c>: the memory a training run with
/// these settings needs (<see cref="MemoryPlan"/>), line by line, whether it fits in --memory and which option would
/// make it fit. Takes every option of <c>train</c>; reads only the GGUF header. <c>--random SHAPE</c> plans for a named
/// shape (<see cref="RandomModelSpec.Named"/>) without writing a model.
/// </summary>
public static class PlanCommand
{
    /// <summary>The vocabulary of a --random shape by default: Qwen2/Qwen3's 151,936 token embeddings.</summary>
    public const int DefaultRandomVocab = 151_936;

    public static Command Create()
    {
        var random = new Option<string?>("--random") { Description = $"Plan for a named model shape instead of a file ({string.Join(", ", RandomModelSpec.NamedShapes)}); nothing is written", HelpName = "SHAPE" };
        BenchCommon.OneOf(random, RandomModelSpec.NamedShapes.ToArray());
        var randomType = new Option<string>("--random-type") { Description = "Type of the 2-D weights of the --random model llama.cpp starts from (F32, F16, BF16, Q8_0)", DefaultValueFactory = _ => "F16" };
        BenchCommon.OneOf(randomType, "F32", "F16", "BF16", "Q8_0");
        var vocab = new Option<int>("--vocab-size") { Description = "Vocabulary of a --random shape", DefaultValueFactory = _ => DefaultRandomVocab, HelpName = "N" };
        var json = new Option<bool>("--json") { Description = "Print the plan as JSON" };
        var cmd = new Command("plan", "The memory a train run needs (trainer weights, AdamW, gradients, activations, LM head, LoRA, llama.cpp model and KV cache): whether it fits in --memory, and what would make it fit")
        {
            random, randomType, vocab, json,
        };
        var binding = new TrainOptionBinding(cmd);
        cmd.SetAction(parse =>
        {
            var o = binding.Resolve(parse, new TrainOptions());
            var shapeName = parse.GetValue(random);
            if ((o.Model is null) == (shapeName is null)) throw new BupoException("give the model with exactly one of --model M.gguf or --random SHAPE");
            ModelShape shape;
            if (shapeName != null)
            {
                if (parse.GetValue(vocab) is < 1 and var v) throw new BupoException($"--vocab-size must be positive, got {v}");
                var spec = RandomModelSpec.Named(shapeName) with { TensorType = Enum.Parse<GgmlType>(parse.GetValue(randomType)!, ignoreCase: true) };
                shape = ModelShape.FromSpec(spec, parse.GetValue(vocab));
                o = o with { Model = $"random {shapeName.ToLowerInvariant()}" };
            }
            else
            {
                LlamaModel.ValidateGgufMagic(o.Model!);
                shape = ModelShape.FromGguf(o.Model!);
            }
            o.Validate(needDataset: false);
            var plan = MemoryPlan.Compute(shape, o);
            var stdout = parse.InvocationConfiguration.Output;
            if (parse.GetValue(json)) stdout.WriteLine(ToJson(plan).ToJsonString(JsonFormat.Indented));
            else Render(plan, stdout);
            return 0;
        });
        return cmd;
    }

    private static string Label(MemoryPart part, MemoryPlan plan) => part switch
    {
        MemoryPart.ProcessOverhead => plan.Device == MemoryDevice.Cpu ? "process (.NET, libtorch, llama.cpp)" : "CUDA contexts",
        MemoryPart.Weights => plan.Options.Dtype == Model.TrainPrecision.BFloat16Mixed ? "fp32 master weights" : "trainer weights",
        MemoryPart.ComputeCopies => "bf16 compute copies",
        MemoryPart.AdamWState => "AdamW state",
        MemoryPart.Gradients => "gradients",
        MemoryPart.Activations => "activations (micro-batch)",
        MemoryPart.LmHead => "LM head (chunked)",
        MemoryPart.Lora => "LoRA",
        MemoryPart.KlReference => "KL reference model",
        MemoryPart.SamplerModel => "llama.cpp model",
        MemoryPart.KvCache => "llama.cpp KV cache",
        MemoryPart.SamplerBuffers => "llama.cpp buffers",
        MemoryPart.SyncReload => "weight-sync reload",
        MemoryPart.TransientCopies => "late-freed copies",
        _ => part.ToString(),
    };

    private static void Render(MemoryPlan plan, TextWriter w)
    {
        var inv = CultureInfo.InvariantCulture;
        var o = plan.Options;
        var c = plan.Model.Config;
        w.WriteLine(string.Format(inv, "memory plan: {0} ({1}, {2} blocks, d {3}, vocab {4:N0}, {5:N0} parameters) on {6}, --dtype {7}, {8}",
            plan.Model.Name, c.Architecture, c.LayerCount, c.EmbeddingLength, c.VocabSize, plan.Model.ParameterCount, o.Device, Model.ModelDevice.PrecisionName(o.Dtype),
            o.LoraRank > 0 ? $"LoRA rank {o.LoraRank} ({plan.TrainedParameters.ToString("N0", inv)} trained parameters)" : "full fine-tuning"));
        if (o.Dtype == Model.TrainPrecision.Float32) w.WriteLine("  (float32: the weights are the masters; no separate fp32 master copy)");
        var width = plan.Items.Max(i => Label(i.Part, plan).Length);
        foreach (var item in plan.Items)
        {
            var phases = item.Phases.Count == Enum.GetValues<PlanPhase>().Length ? "" : $" [{string.Join(", ", item.Phases.Order().Select(MemoryPlan.PhaseName))}]";
            w.WriteLine($"  {Label(item.Part, plan).PadRight(width)}  {ByteSize.Format(item.Bytes),10}  {item.Detail}{phases}");
        }
        var (without, with) = plan.ActivationsByCheckpointing;
        w.WriteLine($"  activations per micro-batch of {plan.MicroBatchTokens.ToString("N0", inv)} tokens: {ByteSize.Format(without)} without, {ByteSize.Format(with)} with --gradient-checkpointing");
        w.WriteLine("  " + string.Join("; ", Enum.GetValues<PlanPhase>().Select(ph => $"{MemoryPlan.PhaseName(ph)} phase {ByteSize.Format(plan.PhaseBytes(ph))}")));
        w.WriteLine($"peak: {ByteSize.Format(plan.PeakBytes)} ({plan.PeakBytes.ToString(inv)} bytes, {(plan.Device == MemoryDevice.Cpu ? "RAM" : "GPU memory")}, in the {MemoryPlan.PhaseName(plan.PeakPhase)})");
        if (o.MemoryBytes is not { } budget) return;
        if (plan.PeakBytes <= budget)
        {
            w.WriteLine($"fits in --memory {o.Memory} ({ByteSize.Format(budget - plan.PeakBytes)} to spare)");
            return;
        }
        var advice = plan.Advise(budget);
        w.WriteLine($"does not fit in --memory {o.Memory} ({ByteSize.Format(plan.PeakBytes - budget)} over)");
        if (advice.Count == 0) w.WriteLine("  no option or combination tried makes it fit (a smaller model, or more memory)");
        foreach (var a in advice) w.WriteLine($"  fits with {a.Options}: {ByteSize.Format(a.PeakBytes)}");
    }

    private static JsonObject ToJson(MemoryPlan plan)
    {
        var items = new JsonArray();
        foreach (var i in plan.Items)
            items.Add(new JsonObject
            {
                ["part"] = i.Part.ToString(), ["bytes"] = i.Bytes, ["phases"] = new JsonArray(i.Phases.Select(p => (JsonNode)p.ToString()).ToArray()), ["detail"] = i.Detail,
            });
        var o = plan.Options;
        var root = new JsonObject
        {
            ["model"] = plan.Model.Name,
            ["parameters"] = plan.Model.ParameterCount,
            ["trained_parameters"] = plan.TrainedParameters,
            ["device"] = plan.Device.ToString(),
            ["micro_batch_tokens"] = plan.MicroBatchTokens,
            ["activations_without_checkpointing"] = plan.ActivationsByCheckpointing.Without,
            ["activations_with_checkpointing"] = plan.ActivationsByCheckpointing.With,
            ["items"] = items,
            ["rollout_bytes"] = plan.PhaseBytes(PlanPhase.Rollout),
            ["update_bytes"] = plan.PhaseBytes(PlanPhase.Update),
            ["sync_bytes"] = plan.PhaseBytes(PlanPhase.WeightSync),
            ["peak_bytes"] = plan.PeakBytes,
            ["peak_phase"] = plan.PeakPhase.ToString(),
        };
        if (o.MemoryBytes is { } budget)
        {
            root["memory_bytes"] = budget;
            root["fits"] = plan.PeakBytes <= budget;
            root["advice"] = new JsonArray(plan.Advise(budget).Select(a => (JsonNode)new JsonObject { ["options"] = a.Options, ["peak_bytes"] = a.PeakBytes }).ToArray());
        }
        return root;
    }
}
