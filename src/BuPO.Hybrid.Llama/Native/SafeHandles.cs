using System.Runtime.InteropServices;

namespace BuPO.Hybrid.Llama.Native;

/// <summary>Owns a <c>llama_model *</c>; freed with <c>llama_model_free</c> after every dependent handle let go.</summary>
internal sealed class SafeLlamaModelHandle : SafeHandle
{
    public SafeLlamaModelHandle() : base(0, true) { }
    public SafeLlamaModelHandle(nint model) : base(0, true) => SetHandle(model);
    public override bool IsInvalid => handle == 0;
    protected override bool ReleaseHandle() { LlamaNative.llama_model_free(handle); return true; }
}

/// <summary>
/// Base of handles whose native object depends on a model: holds a reference on the model handle (so the
/// model is freed only after this object, even when both are finalized) and releases it after freeing.
/// </summary>
internal abstract class SafeModelDependentHandle : SafeHandle
{
    private readonly SafeLlamaModelHandle? _model;

    protected SafeModelDependentHandle(nint ptr, SafeLlamaModelHandle model) : base(0, true)
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
        _model?.DangerousRelease();
        return true;
    }
}

/// <summary>
/// Owns a <c>llama_context *</c> and what the native context points to: the GCHandle of the eval-callback
/// target and references on the LoRA adapters applied to it; all are let go only after <c>llama_free</c>.
/// </summary>
internal sealed class SafeLlamaContextHandle : SafeModelDependentHandle
{
    public SafeLlamaContextHandle(nint ctx, SafeLlamaModelHandle model, System.Runtime.InteropServices.GCHandle callbackTarget)
        : base(ctx, model) => CallbackTarget = callbackTarget;

    public System.Runtime.InteropServices.GCHandle CallbackTarget;

    /// <summary>Adapters with a reference held by this context (DangerousAddRef'd once each).</summary>
    public readonly List<SafeLlamaLoraHandle> AdapterRefs = [];

    protected override void Free(nint ptr)
    {
        LlamaNative.llama_free(ptr);
        if (CallbackTarget.IsAllocated) CallbackTarget.Free();
        lock (AdapterRefs)
        {
            foreach (var a in AdapterRefs) a.DangerousRelease();
            AdapterRefs.Clear();
        }
    }
}

/// <summary>Owns a <c>llama_adapter_lora *</c> (must be freed before its model).</summary>
internal sealed class SafeLlamaLoraHandle : SafeModelDependentHandle
{
    public SafeLlamaLoraHandle(nint adapter, SafeLlamaModelHandle model) : base(adapter, model) { }
    protected override void Free(nint ptr) => LlamaNative.llama_adapter_lora_free(ptr);
}

/// <summary>Owns a <c>llama_sampler *</c> (a chain frees the samplers added to it).</summary>
internal sealed class SafeLlamaSamplerHandle : SafeHandle
{
    public SafeLlamaSamplerHandle() : base(0, true) { }
    public SafeLlamaSamplerHandle(nint sampler) : base(0, true) => SetHandle(sampler);
    public override bool IsInvalid => handle == 0;
    protected override bool ReleaseHandle() { LlamaNative.llama_sampler_free(handle); return true; }
}
