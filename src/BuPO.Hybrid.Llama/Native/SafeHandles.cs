using System.Runtime.InteropServices;
using LLama.Native;

namespace BuPO.Hybrid.Llama.Native;

/// <summary>
/// Owns LLamaSharp's <see cref="SafeLlamaModelHandle"/> for us. Contexts and adapters hold a reference on this handle, so
/// the model is disposed (LLamaSharp then calls <c>llama_model_free</c>) only after every one of them let go, even when
/// <see cref="LlamaModel.Dispose"/> ran first: disposing LLamaSharp's handle directly would mark it closed at once and
/// make every later call on a context of that model throw.
/// </summary>
internal sealed class SafeModelOwner : SafeHandle
{
    public SafeModelOwner(SafeLlamaModelHandle model) : base(0, true)
    {
        Model = model;
        SetHandle(model.DangerousGetHandle());
    }

    /// <summary>LLamaSharp's handle; valid while this one is open or referenced.</summary>
    public SafeLlamaModelHandle Model { get; }

    public override bool IsInvalid => handle == 0;

    protected override bool ReleaseHandle()
    {
        Model.Dispose();
        return true;
    }
}

/// <summary>
/// Base of handles that depend on a model: holds a reference on the model's owner (so the model is freed only after this
/// object, even when both are finalized) and releases it after freeing its own native object.
/// </summary>
internal abstract class SafeModelDependentHandle : SafeHandle
{
    private readonly SafeModelOwner _model;

    protected SafeModelDependentHandle(nint ptr, SafeModelOwner model) : base(0, true)
    {
        bool added = false;
        model.DangerousAddRef(ref added);
        _model = model;
        SetHandle(ptr);
    }

    public override bool IsInvalid => handle == 0;

    protected abstract void Free(nint ptr);

    protected override bool ReleaseHandle()
    {
        Free(handle);
        _model.DangerousRelease();
        return true;
    }
}

/// <summary>
/// Owns a context and everything its native side points to: LLamaSharp's <see cref="SafeLLamaContextHandle"/>, the
/// GCHandle that the eval callback receives as user data (the probe), and references on the LoRA adapters applied to it.
/// Releasing frees the context first (<c>llama_free</c>, through LLamaSharp) and only then the callback's user data and
/// the adapters, then lets go of the model. Every call that can run the callback or read the adapters (a decode) holds
/// a reference on this handle, so the release cannot happen during it.
/// </summary>
internal sealed class SafeContextOwner : SafeModelDependentHandle
{
    public SafeContextOwner(SafeLLamaContextHandle context, SafeModelOwner model, GCHandle callbackTarget)
        : base(context.DangerousGetHandle(), model)
    {
        Context = context;
        _callbackTarget = callbackTarget;
    }

    private GCHandle _callbackTarget;

    /// <summary>LLamaSharp's context handle.</summary>
    public SafeLLamaContextHandle Context { get; }

    /// <summary>True when an eval callback was installed.</summary>
    public bool HasCallback => _callbackTarget.IsAllocated;

    /// <summary>Adapters with a reference held by this context (DangerousAddRef'd once each).</summary>
    public readonly List<SafeLlamaLoraHandle> AdapterRefs = [];

    protected override void Free(nint ptr)
    {
        Context.Dispose(); // llama_free (LLamaSharp's handle holds its own reference on the model)
        if (_callbackTarget.IsAllocated) _callbackTarget.Free();
        lock (AdapterRefs)
        {
            foreach (var a in AdapterRefs) a.DangerousRelease();
            AdapterRefs.Clear();
        }
    }
}

/// <summary>Owns a <c>llama_adapter_lora *</c> (freed before its model).</summary>
internal sealed class SafeLlamaLoraHandle : SafeModelDependentHandle
{
    public SafeLlamaLoraHandle(nint adapter, SafeModelOwner model) : base(adapter, model) { }
    protected override void Free(nint ptr) => LlamaNative.llama_adapter_lora_free(ptr);
}
