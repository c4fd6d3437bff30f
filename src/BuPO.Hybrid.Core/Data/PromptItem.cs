namespace BuPO.Hybrid.Data;

/// <summary>One message of a chat-formatted prompt (as DeepMath-5k's <c>prompt</c> list).</summary>
public sealed record ChatMessage(string Role, string Content);

/// <summary>
/// One prompt of a dataset.
/// </summary>
/// <param name="Id">The record's <c>id</c> field when it has one, else <c>&lt;dataset&gt;-&lt;index&gt;</c> (0-based).</param>
/// <param name="Problem">The problem text the model is asked.</param>
/// <param name="Answer">The reference final answer as a string (GSM8K: the text after <c>#### </c>; AMC's 27.0 as "27";
/// AIME's "025" kept as is), or null where the dataset has none (plain-text prompt files).</param>
/// <param name="Solution">A worked solution where the dataset has one (GSM8K, MATH500, AIME24), else null.</param>
/// <param name="Messages">The chat-formatted prompt where the dataset gives one (DeepMath-5k), else null.</param>
/// <param name="Source">The file the item came from.</param>
/// <param name="Line">Its 1-based line in that file.</param>
public sealed record PromptItem(
    string Id,
    string Problem,
    string? Answer,
    string? Solution = null,
    IReadOnlyList<ChatMessage>? Messages = null,
    string Source = "",
    int Line = 0)
{
    /// <summary>The system message of <see cref="Messages"/>, or null.</summary>
    public string? SystemPrompt => Messages?.FirstOrDefault(m => m.Role == "system")?.Content;
}
