using BuPO.Hybrid.Tokenizers;
using BuPO.Hybrid.Rollout;

namespace BuPO.Hybrid.RL.Training;

/// <summary>
/// Named prompt formats for math rollouts and evaluation:
/// <list type="bullet">
/// <item><c>raw</c>: the problem text as is.</item>
/// <item><c>boxed</c>: plain text, the problem followed by <see cref="BoxedInstruction"/> and a newline.</item>
/// <item><c>chat</c>: the model's own chat template (llama.cpp's built-in families) around one user message, the problem
/// followed by <see cref="BoxedInstruction"/>, ending with the opening of the assistant turn.</item>
/// <item><c>qwen3_no_thinking</c>: BuPO's prompt: the same user message in Qwen3's chat markup, assistant turn opened with
/// an empty think block (Qwen3's enable_thinking=False).</item>
/// <item><c>auto</c> (resolved by <see cref="Resolve"/>): qwen3_no_thinking for a qwen3 model, chat when the model has a
/// chat template, else boxed.</item>
/// </list>
/// </summary>
public static class PromptTemplates
{
    /// <summary>BuPO's instruction (the reference code's system prompt for DeepMath-5k and MATH evaluation).</summary>
    public const string BoxedInstruction = "Please reason step by step, and put your final answer within \\boxed{}.";

    /// <summary>The template names <see cref="Format(string, string, Func{IReadOnlyList{ValueTuple{string, string}}, string}?)"/> knows.</summary>
    public static IReadOnlyList<string> Names { get; } = ["raw", "boxed", "chat", "qwen3_no_thinking"];

    /// <summary>The user message of the boxed/chat templates.</summary>
    public static string UserMessage(string problem) => $"{problem.Trim()} {BoxedInstruction}";

    /// <summary>
    /// Formats <paramref name="problem"/> with template <paramref name="name"/>. <paramref name="applyChatTemplate"/> formats a
    /// conversation with the model's chat template (needed for "chat" only; see <see cref="RolloutEngine.ApplyChatTemplate"/>).
    /// </summary>
    /// <exception cref="BupoException">Unknown name, or "chat" without a chat template.</exception>
    public static string Format(string name, string problem, Func<IReadOnlyList<(string Role, string Content)>, string>? applyChatTemplate = null)
    {
        ArgumentNullException.ThrowIfNull(problem);
        switch (Normalize(name))
        {
            case "raw":
                return problem;
            case "boxed":
                return UserMessage(problem) + "\n";
            case "qwen3_no_thinking":
                return $"<|im_start|>user\n{UserMessage(problem)}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n";
            case "chat":
                if (applyChatTemplate == null) throw new BupoException("template 'chat' needs the model's chat template");
                return applyChatTemplate([("user", UserMessage(problem))]);
            case "auto":
                throw new BupoException("template 'auto' must be resolved against a model first (PromptTemplates.Resolve)");
            default:
                throw new BupoException($"unknown prompt template '{name}' (known: {string.Join(", ", Names)}, auto)");
        }
    }

    /// <summary>Formats with the engine's model (its chat template for "chat"; "auto" resolved for it).</summary>
    public static string Format(string name, string problem, RolloutEngine engine)
    {
        ArgumentNullException.ThrowIfNull(engine);
        return Format(Resolve(name, engine), problem, m => engine.ApplyChatTemplate(m));
    }

    /// <summary>Formats and tokenizes: special tokens in the markup are parsed, BOS is added when the model wants it (once).</summary>
    public static int[] Encode(string name, string problem, RolloutEngine engine) => Encode(Format(name, problem, engine), engine.Tokenizer);

    /// <summary>Tokenizes a formatted prompt: special tokens parsed, BOS added when the vocabulary asks for it and not already there.</summary>
    public static int[] Encode(string formatted, ITextTokenizer tokenizer)
    {
        var ids = tokenizer.Encode(formatted, addSpecial: true, parseSpecial: true);
        if (ids.Length >= 2 && tokenizer.BosId >= 0 && ids[0] == tokenizer.BosId && ids[1] == tokenizer.BosId) ids = ids[1..];
        return ids;
    }

    /// <summary>The concrete template "auto" (or any name) stands for with this engine's model.</summary>
    public static string Resolve(string name, RolloutEngine engine)
    {
        var n = Normalize(name);
        if (n != "auto") return n;
        if (engine.Model.Architecture.StartsWith("qwen3", StringComparison.OrdinalIgnoreCase)) return "qwen3_no_thinking";
        return engine.ChatTemplate != null ? "chat" : "boxed";
    }

    private static string Normalize(string name)
    {
        if (string.IsNullOrWhiteSpace(name)) throw new BupoException("no prompt template named");
        var n = name.Trim().ToLowerInvariant().Replace('-', '_');
        return n;
    }
}
