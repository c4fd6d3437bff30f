using BuPO.Hybrid.Llama.Native;

namespace BuPO.Hybrid.Llama;

/// <summary>
/// A LoRA adapter in GGUF form (<c>llama_adapter_lora_init</c>, our own import: LLamaSharp's LoadLoraFromFile does not
/// report a failed load) for one model. Apply it to a context with
/// <see cref="LlamaContext.ApplyLora"/>. Disposing it while a context uses it is safe: the native adapter is
/// freed only when no context references it any more (and always before its model).
/// </summary>
public sealed class LlamaLoraAdapter : IDisposable
{
    internal SafeLlamaLoraHandle Handle { get; }

    /// <summary>The model the adapter belongs to.</summary>
    public LlamaModel Model { get; }
    /// <summary>The adapter file.</summary>
    public string Path { get; }

    private LlamaLoraAdapter(LlamaModel model, string path, SafeLlamaLoraHandle handle)
    {
        Model = model;
        Path = path;
        Handle = handle;
    }

    /// <summary>Loads a GGUF LoRA adapter for <paramref name="model"/>.</summary>
    /// <exception cref="BupoException">Missing or non-GGUF file, or llama.cpp rejected it (e.g. made for another model).</exception>
    public static LlamaLoraAdapter Load(LlamaModel model, string path)
    {
        ArgumentNullException.ThrowIfNull(model);
        model.ThrowIfDisposed();
        LlamaModel.ValidateGgufMagic(path);
        var full = System.IO.Path.GetFullPath(path);
        var mark = LlamaBackend.ErrorMark;
        nint ptr = LlamaNative.llama_adapter_lora_init(model.Handle, full);
        if (ptr == 0) throw new BupoException($"{full}: llama.cpp could not load the LoRA adapter{LlamaBackend.ErrorsSince(mark)}");
        return new LlamaLoraAdapter(model, full, new SafeLlamaLoraHandle(ptr, model.Owner));
    }

    /// <summary>Releases the adapter (freed once no context uses it).</summary>
    public void Dispose() => Handle.Dispose();
}
