namespace BuPO.Hybrid.Gguf;

/// <summary>A GGUF file is malformed or unsupported; the message names the file and the field.</summary>
public sealed class GgufFormatException(string message) : BupoException(message);
