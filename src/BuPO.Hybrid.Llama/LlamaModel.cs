using System.Runtime.InteropServices;
using System.Text;
using BuPO.Hybrid.Gguf;
using BuPO.Hybrid.Llama.Native;
using LLama.Native;

namespace BuPO.Hybrid.Llama;

/// <summary>Options of <see cref="LlamaModel.Load"/>.</summary>
public sealed record LlamaModelOptions
{
    /// <summary>Layers offloaded to the GPU: -1 = all (llama.cpp's default), 0 = none. Ignored without a GPU backend.</summary>
    public int GpuLayers { get; init; } = -1;

    /// <summary>
    /// Memory-map the file: true = mmap, false = read into memory, null = read files up to
    /// <see cref="GgufFile.InMemoryThreshold"/> into memory (an outside rewrite of a mapped file is a SIGBUS at the next
    /// decode) and let llama.cpp decide for bigger ones.
    /// </summary>
    public bool? UseMmap { get; init; }

    /// <summary>Load only the vocabulary (no weights): enough for tokenization.</summary>
    public bool VocabOnly { get; init; }

    /// <summary>Called with the load progress in [0, 1].</summary>
    public Action<float>? Progress { get; init; }

    /// <summary>Cancels loading (checked at each progress step).</summary>
    public CancellationToken Cancellation { get; init; }
}

/// <summary>A chat message for <see cref="LlamaModel.ApplyChatTemplate"/>.</summary>
public sealed record LlamaChatMessage(string Role, string Content);

/// <summary>
/// A GGUF model loaded by llama.cpp (<c>llama_model</c>, LLamaSharp's <see cref="SafeLlamaModelHandle"/>). Dispose to free
/// it; contexts and adapters keep it alive until they are disposed.
/// </summary>
public sealed unsafe class LlamaModel : IDisposable
{
    /// <summary>Our owner of LLamaSharp's handle (contexts and adapters hold references on it).</summary>
    internal SafeModelOwner Owner { get; }

    /// <summary>LLamaSharp's handle (valid while <see cref="Owner"/> is).</summary>
    internal SafeLlamaModelHandle Handle => Owner.Model;
    private LlamaVocab? _vocab;
    private IReadOnlyDictionary<string, string>? _metadata;

    /// <summary>Path the model was loaded from.</summary>
    public string Path { get; }

    private LlamaModel(SafeLlamaModelHandle handle, string path)
    {
        Owner = new SafeModelOwner(handle);
        Path = path;
        LayerCount = handle.LayerCount;
        EmbeddingSize = handle.EmbeddingSize;
        // llama_model_n_head reads layer 0's entry and aborts the process (GGML_ABORT) when there is no layer,
        // as in a vocab-only load: only ask when layers exist.
        HeadCount = LayerCount > 0 ? handle.HeadCount : 0;
        HeadCountKv = LayerCount > 0 ? handle.KVHeadCount : 0;
        TrainContextSize = handle.ContextSize;
        NativeVocab = LlamaNative.llama_model_get_vocab(handle);
        if (NativeVocab == 0) throw new BupoException($"{path}: llama.cpp returned no vocabulary");
        VocabSize = handle.Vocab.Count;
    }

    internal nint NativeVocab { get; }

    /// <summary>Number of transformer blocks (n_layer).</summary>
    public int LayerCount { get; }
    /// <summary>Width of the residual stream (n_embd).</summary>
    public int EmbeddingSize { get; }
    /// <summary>Attention heads (of layer 0; 0 for a vocab-only load).</summary>
    public int HeadCount { get; }
    /// <summary>Key/value heads (of layer 0; 0 for a vocab-only load).</summary>
    public int HeadCountKv { get; }
    /// <summary>Context length the model was trained with.</summary>
    public int TrainContextSize { get; }
    /// <summary>Vocabulary size (rows of the logits).</summary>
    public int VocabSize { get; }

    /// <summary><c>general.architecture</c> (e.g. "llama", "qwen3").</summary>
    public string Architecture => GetMetadata("general.architecture") ?? "";

    /// <summary>llama.cpp's one-line description (type, size, quantization).</summary>
    public string Description { get { ThrowIfDisposed(); return Handle.Description; } }

    /// <summary>Total bytes of the tensors.</summary>
    public long SizeBytes { get { ThrowIfDisposed(); return (long)Handle.SizeInBytes; } }
    /// <summary>Number of parameters.</summary>
    public long ParameterCount { get { ThrowIfDisposed(); return (long)Handle.ParameterCount; } }

    /// <summary>The model's tokenizer.</summary>
    public LlamaVocab Vocab => _vocab ??= new LlamaVocab(this);

    /// <summary>
    /// Checks that <paramref name="path"/> is a GGUF whose metadata is consistent for a load of <paramref name="scope"/>
    /// (<see cref="GgufModelValidator"/>: llama.cpp aborts the process on some inconsistent values), so llama.cpp is never
    /// handed something it would crash on. Throws <see cref="BupoException"/> naming the file.
    /// </summary>
    public static void ValidateGgufFile(string path, GgufLoadScope scope = GgufLoadScope.Model)
    {
        ValidateGgufMagic(path);
        GgufModelValidator.Validate(path, scope);
    }

    /// <summary>Checks only that <paramref name="path"/> exists and starts with the GGUF magic (adapters, which are not models).</summary>
    public static void ValidateGgufMagic(string path)
    {
        var full = System.IO.Path.GetFullPath(path);
        if (Directory.Exists(full)) throw new BupoException($"{full}: is a folder, not a GGUF file");
        if (!File.Exists(full)) throw new BupoException($"{full}: file not found");
        Span<byte> magic = stackalloc byte[4];
        int read;
        try
        {
            using var fs = new FileStream(full, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            read = fs.ReadAtLeast(magic, 4, throwOnEndOfStream: false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new BupoException($"{full}: cannot read: {e.Message}", e);
        }
        if (read < 4 || magic[0] != 'G' || magic[1] != 'G' || magic[2] != 'U' || magic[3] != 'F')
            throw new BupoException($"{full}: not a GGUF file (it does not start with the GGUF magic)");
    }

    /// <summary>Loads a GGUF model.</summary>
    /// <exception cref="BupoException">Missing or non-GGUF file, or llama.cpp failed to load it (its error is quoted).</exception>
    public static LlamaModel Load(string path, LlamaModelOptions? options = null)
    {
        options ??= new LlamaModelOptions();
        ValidateGgufFile(path, options.VocabOnly ? GgufLoadScope.VocabOnly : GgufLoadScope.Model);
        var full = System.IO.Path.GetFullPath(path);
        LlamaBackend.EnsureInitialized();

        var p = LLamaModelParams.Default(); // layout checked against the library by LlamaBackend.Initialize
        p.n_gpu_layers = options.GpuLayers;
        // 815a2a59 has no "auto" load mode (its default maps the file): small files are read, as the option says.
        var mmap = options.UseMmap ?? new FileInfo(full).Length > GgufFile.InMemoryThreshold;
        p.load_mode = mmap ? LLamaLoadMode.MemoryMap : LLamaLoadMode.None;
        p.vocab_only = options.VocabOnly;
        var progress = new ProgressState(options.Progress, options.Cancellation);
        LlamaProgressCallback callback = progress.OnProgress; // marshalled for the duration of the load only
        p.progress_callback = callback;
        var mark = LlamaBackend.ErrorMark;
        SafeLlamaModelHandle? handle = null;
        try
        {
            handle = SafeLlamaModelHandle.LoadFromFile(full, p);
        }
        catch (Exception e) when (e is LLama.Exceptions.LoadWeightsFailedException or IOException or UnauthorizedAccessException)
        {
            progress.Error?.Throw();
            options.Cancellation.ThrowIfCancellationRequested();
            if (e is LLama.Exceptions.LoadWeightsFailedException)
                throw new BupoException($"{full}: llama.cpp could not load the model{LlamaBackend.ErrorsSince(mark)}", e);
            throw new BupoException($"{full}: cannot read: {e.Message}", e);
        }
        finally
        {
            GC.KeepAlive(callback);
        }
        progress.Error?.Throw();
        try
        {
            return new LlamaModel(handle, full);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    private sealed class ProgressState(Action<float>? callback, CancellationToken cancellation)
    {
        public System.Runtime.ExceptionServices.ExceptionDispatchInfo? Error;

        public bool OnProgress(float progress, nint userData)
        {
            try
            {
                if (cancellation.IsCancellationRequested) return false;
                callback?.Invoke(progress);
                return true;
            }
            catch (Exception e)
            {
                Error = System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e);
                return false;
            }
        }
    }

    /// <summary>A metadata value as llama.cpp renders it (scalars; arrays are not supported by llama.cpp), or null.</summary>
    public string? GetMetadata(string key)
    {
        ArgumentNullException.ThrowIfNull(key);
        ThrowIfDisposed();
        int size = 256;
        while (true)
        {
            var buf = new byte[size];
            int n;
            fixed (byte* b = buf) n = LlamaNative.llama_model_meta_val_str(Handle, key, b, (nuint)size);
            if (n < 0) return null;
            if (n < size) return Encoding.UTF8.GetString(buf, 0, n);
            size = n + 1;
        }
    }

    /// <summary>All metadata keys with their values as llama.cpp renders them.</summary>
    public IReadOnlyDictionary<string, string> Metadata => _metadata ??= ReadMetadata();

    private Dictionary<string, string> ReadMetadata()
    {
        ThrowIfDisposed();
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        int count = Handle.MetadataCount;
        for (int i = 0; i < count; i++)
        {
            if (Handle.MetadataKeyByIndex(i) is not { } key) continue;
            result[Encoding.UTF8.GetString(key.Span)] = Handle.MetadataValueByIndex(i) is { } v ? Encoding.UTF8.GetString(v.Span) : "";
        }
        return result;
    }

    /// <summary>The model's chat template (<c>tokenizer.chat_template</c>, or a named one), or null.</summary>
    public string? GetChatTemplate(string? name = null)
    {
        ThrowIfDisposed();
        return Handle.GetTemplate(name, strict: false);
    }

    /// <summary>The default chat template, or null when the GGUF has none.</summary>
    public string? ChatTemplate => GetChatTemplate();

    /// <summary>
    /// Formats <paramref name="messages"/> with llama.cpp's built-in template matching <paramref name="template"/>
    /// (default: the model's own; llama.cpp recognizes the common families by their Jinja text, it does not run Jinja).
    /// </summary>
    /// <param name="messages">The conversation, in order.</param>
    /// <param name="addAssistant">End with the opening of an assistant turn.</param>
    /// <param name="template">A template text or a built-in name (e.g. "chatml", "llama3"); null = the model's.</param>
    /// <exception cref="BupoException">No template, or one llama.cpp does not recognize.</exception>
    public string ApplyChatTemplate(IReadOnlyList<LlamaChatMessage> messages, bool addAssistant, string? template = null)
    {
        template ??= ChatTemplate ?? throw new BupoException($"{Path}: the model has no chat template (tokenizer.chat_template)");
        var pins = new List<GCHandle>();
        try
        {
            var native = new LLamaChatMessage[messages.Count];
            for (int i = 0; i < messages.Count; i++)
            {
                var role = GCHandle.Alloc(Utf8Z(messages[i].Role), GCHandleType.Pinned);
                var content = GCHandle.Alloc(Utf8Z(messages[i].Content), GCHandleType.Pinned);
                pins.Add(role);
                pins.Add(content);
                native[i] = new LLamaChatMessage { role = (byte*)role.AddrOfPinnedObject(), content = (byte*)content.AddrOfPinnedObject() };
            }
            var tmpl = Utf8Z(template);
            int size = Math.Max(256, messages.Sum(m => Encoding.UTF8.GetByteCount(m.Content) + Encoding.UTF8.GetByteCount(m.Role)) * 2 + 256);
            while (true)
            {
                var buf = new byte[size];
                int n;
                fixed (byte* t = tmpl)
                fixed (LLamaChatMessage* m = native)
                fixed (byte* b = buf)
                    n = NativeApi.llama_chat_apply_template(t, m, (nuint)native.Length, addAssistant, b, size);
                if (n < 0) throw new BupoException($"{Path}: llama.cpp does not support this chat template (it recognizes only built-in template families)");
                if (n <= size) return Encoding.UTF8.GetString(buf, 0, n);
                size = n;
            }
        }
        finally
        {
            foreach (var h in pins) h.Free();
        }
    }

    internal static byte[] Utf8Z(string s)
    {
        var bytes = new byte[Encoding.UTF8.GetByteCount(s) + 1];
        Encoding.UTF8.GetBytes(s, bytes);
        return bytes;
    }

    internal void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(Owner.IsClosed, this);

    /// <summary>Frees the model once no context or adapter uses it any more.</summary>
    public void Dispose() => Owner.Dispose();
}
