using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using BuPO.Hybrid.Llama;
using BuPO.Hybrid.Tokenizers;

namespace BuPO.Hybrid.Rollout;

/// <summary>
/// High-throughput rollouts with llama.cpp: P prompts x G samples. Each prompt is prefilled once into one sequence
/// and fanned out to its G sample sequences with <c>llama_memory_seq_cp</c>; up to <see cref="RolloutEngineOptions.Parallel"/>
/// sequences decode together, one token each per <c>llama_decode</c>, and a slot whose sequence ends (end of
/// generation, max tokens, stop string) is refilled at once with the next sample of the current prompt group, or
/// with the next prompt, whose prefill tokens ride along in the next decode. Every token's raw log-prob (full
/// distribution, temperature 1) and sampling log-prob are recorded.
/// </summary>
/// <remarks>
/// Determinism: rollout (p, g) draws from its own random stream derived from (request seed, p, g), so for a fixed
/// model, request and <see cref="RolloutEngineOptions.Parallel"/> the output is identical run to run. Across different
/// Parallel values the token streams agree except where a draw lands within float rounding of a boundary: llama.cpp's
/// CPU kernels sum in an order that depends on the batch (matrix-multiply tiling, KV cell placement), so logits can
/// differ in their last bits when the batch differs. Not thread-safe.
/// </remarks>
public sealed unsafe class RolloutEngine : IDisposable, IRolloutGenerator
{
    /// <summary>llama.cpp's limit on distinct sequence ids (LLAMA_MAX_SEQ).</summary>
    public const int MaxParallel = 256;

    private readonly RolloutEngineOptions _options;
    private readonly bool _unified;
    private LlamaModel? _model;     // null while asleep with the model unloaded (Sleep(unloadModel: true))
    private string _modelPath;
    private bool _ownsModel;
    private LlamaContext? _ctx;
    private LlamaBatch? _batch;
    private LlamaLoraAdapter? _lora;
    private string? _loraPath;
    private float _loraScale = 1f;
    private bool[] _isEog = [];
    private byte[]?[] _pieces = [];
    private TokenSampler[] _samplers = [];
    private bool _disposed;

    /// <summary>Loads the model (no context yet: one is sized for the first request).</summary>
    /// <exception cref="BupoException">Bad options, a missing or bad GGUF, or llama.cpp failed to load it.</exception>
    public RolloutEngine(string ggufPath, RolloutEngineOptions options)
    {
        ArgumentNullException.ThrowIfNull(ggufPath);
        _options = Validated(options);
        _unified = options.UnifiedKvCache ?? false;
        if (!string.IsNullOrWhiteSpace(options.LlamaLibDir)) LlamaBackend.Initialize(options.LlamaLibDir);
        else LlamaBackend.EnsureInitialized();
        _model = LoadModel(ggufPath);
        _modelPath = _model.Path;
        _ownsModel = true;
        OnModelChanged();
        _samplers = CreateSamplers(options);
    }

    /// <summary>
    /// Generates with a model the caller has loaded (and keeps owning: the engine never disposes it, and
    /// <see cref="RolloutEngineOptions.GpuLayers"/> and <see cref="RolloutEngineOptions.LlamaLibDir"/> are the model's
    /// own). Used where the model serves more than rollouts, e.g. analyze's generation before its probes.
    /// </summary>
    /// <exception cref="BupoException">Bad options.</exception>
    public RolloutEngine(LlamaModel model, RolloutEngineOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        _options = Validated(options);
        _unified = options.UnifiedKvCache ?? false;
        _model = model;
        _modelPath = model.Path;
        _ownsModel = false;
        OnModelChanged();
        _samplers = CreateSamplers(options);
    }

    private static RolloutEngineOptions Validated(RolloutEngineOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Parallel is < 1 or > MaxParallel) throw new BupoException($"parallel must be in [1, {MaxParallel}], got {options.Parallel}");
        if (options.ContextSize < 0) throw new BupoException($"context size must be >= 0, got {options.ContextSize}");
        if (options.Threads < 0) throw new BupoException($"threads must be >= 0, got {options.Threads}");
        if (options.SamplingThreads < 0) throw new BupoException($"sampling threads must be >= 0, got {options.SamplingThreads}");
        if (options.GpuLayers < -1) throw new BupoException($"GPU layers must be >= -1, got {options.GpuLayers}");
        return options;
    }

    private static TokenSampler[] CreateSamplers(RolloutEngineOptions options)
    {
        int threads = options.SamplingThreads == 0 ? Environment.ProcessorCount : options.SamplingThreads;
        var samplers = new TokenSampler[Math.Max(1, threads)];
        for (int i = 0; i < samplers.Length; i++) samplers[i] = new TokenSampler();
        return samplers;
    }

    /// <summary>The options the engine was created with.</summary>
    public RolloutEngineOptions Options => _options;
    /// <summary>The loaded model (replaced by <see cref="ReloadModel"/>; loaded again here if <see cref="Sleep"/> unloaded it).</summary>
    public LlamaModel Model { get { ThrowIfDisposed(); return Awake(); } }
    /// <summary>Path of the model's GGUF (also while asleep).</summary>
    public string ModelPath { get { ThrowIfDisposed(); return _modelPath; } }
    /// <summary>True while <see cref="Sleep"/> has unloaded the model (the next use loads it again).</summary>
    public bool IsModelUnloaded => _model is null;
    /// <summary>The loaded model's vocabulary.</summary>
    public ITextTokenizer Tokenizer => Model.Vocab;
    /// <summary>The loaded model's chat template (tokenizer.chat_template), or null.</summary>
    public string? ChatTemplate => Model.ChatTemplate;
    /// <summary>Throughput of the last <see cref="Generate"/>.</summary>
    public RolloutStats LastStats { get; private set; } = new(0, 0);
    /// <summary>KV cells of the current context (0 before the first request).</summary>
    public int ContextSize => _ctx?.ContextSize ?? 0;
    /// <summary>The LoRA adapter applied, or null.</summary>
    public string? LoraPath => _loraPath;

    /// <summary>Formats a conversation with the model's chat template (llama.cpp's built-in template families).</summary>
    public string ApplyChatTemplate(IReadOnlyList<(string Role, string Content)> messages, bool addAssistant = true) =>
        Model.ApplyChatTemplate(messages.Select(m => new LlamaChatMessage(m.Role, m.Content)).ToList(), addAssistant);

    private LlamaModel LoadModel(string path) => LlamaModel.Load(path, new LlamaModelOptions { GpuLayers = _options.GpuLayers });

    private void OnModelChanged()
    {
        var vocab = _model!.Vocab;
        int n = _model.VocabSize;
        _isEog = new bool[n];
        for (int i = 0; i < n; i++) _isEog[i] = vocab.IsEndOfGeneration(i);
        _pieces = new byte[n][];
    }

    /// <summary>
    /// Weight sync: loads <paramref name="ggufPath"/> and makes it the sampler's model; the context is rebuilt for the
    /// next request and any LoRA adapter is dropped (it belonged to the old model: call <see cref="SetLora"/> again if
    /// wanted). On failure the current model (and adapter) stay.
    /// </summary>
    public void ReloadModel(string ggufPath)
    {
        ThrowIfDisposed();
        var model = LoadModel(ggufPath);
        DisposeContext();
        _lora?.Dispose();
        _lora = null;
        _loraPath = null;
        if (_ownsModel) _model?.Dispose();
        _model = model;
        _modelPath = model.Path;
        _ownsModel = true;
        OnModelChanged();
    }

    /// <summary>Applies the GGUF LoRA adapter at <paramref name="adapterPath"/> with <paramref name="scale"/> (replacing any
    /// previous one); null removes it. On failure the previous adapter stays.</summary>
    public void SetLora(string? adapterPath, float scale = 1f)
    {
        ThrowIfDisposed();
        if (!float.IsFinite(scale)) throw new BupoException($"LoRA scale must be finite, got {scale}");
        if (adapterPath == null)
        {
            _ctx?.ClearLora();
            _lora?.Dispose();
            _lora = null;
            _loraPath = null;
            return;
        }
        var adapter = LlamaLoraAdapter.Load(Awake(), adapterPath);
        try
        {
            if (_ctx != null)
            {
                _ctx.ClearLora();
                _ctx.ApplyLora(adapter, scale);
            }
        }
        catch
        {
            adapter.Dispose();
            if (_ctx != null && _lora != null) _ctx.ApplyLora(_lora, _loraScale);
            throw;
        }
        _lora?.Dispose();
        _lora = adapter;
        _loraPath = adapter.Path;
        _loraScale = scale;
    }

    /// <summary>
    /// Frees what the engine holds between requests while something else needs the memory (an RL loop calls it before
    /// the trainer's update, as verl, TRL and Unsloth put their inference engine to sleep): the context (KV cache and
    /// compute buffers; the next <see cref="Generate"/> builds it again, as after a weight sync) and, with
    /// <paramref name="unloadModel"/>, the model and its LoRA adapter too (loaded again from <see cref="ModelPath"/>, and the
    /// adapter re-applied, on next use). A model the caller owns is never unloaded.
    /// </summary>
    public void Sleep(bool unloadModel = false)
    {
        ThrowIfDisposed();
        DisposeContext();
        if (!unloadModel || !_ownsModel || _model is null) return;
        _lora?.Dispose();
        _lora = null;           // _loraPath and _loraScale stay: Awake applies the adapter again
        _model.Dispose();
        _model = null;
    }

    /// <summary>The model, loaded again (with the adapter) when <see cref="Sleep"/> unloaded it.</summary>
    private LlamaModel Awake()
    {
        if (_model is not null) return _model;
        _model = LoadModel(_modelPath);
        OnModelChanged();
        if (_loraPath is { } lora)
        {
            _loraPath = null;
            SetLora(lora, _loraScale);
        }
        return _model;
    }

    // ------------------------------------------------------------------ generation state

    private sealed class Group
    {
        public int Prompt;
        public int[] Tokens = [];
        public int Holder;          // a slot holding the prompt's KV cells while samples are left to start
        public int NextSample;      // samples started so far
        public int Cursor;          // prefill progress
        public int LogitsIndex = -1;
        public float[]? Logits;     // the prompt's last-token logits, kept while samples are left to start
    }

    private enum SlotState : byte { Free, Prefilling, Live }

    private sealed class Slot
    {
        public SlotState State;
        public Group? Group;
        public int Sample;
        public int Count;           // response tokens so far
        public int[] Tokens = [];
        public float[] Raw = [];
        public float[] Sampling = [];
        public byte[] Text = [];
        public int TextLength;
        public RolloutRng Rng;
        public int BatchIndex;
        public nint LogitsPtr;
        public int Sampled;
        public float SampledRaw, SampledSampling;
    }

    private Slot[] _slots = [];
    private readonly Stack<int> _free = new();
    private readonly List<Group> _prefilling = [];
    private readonly List<Group> _pendingStart = [];
    private readonly List<int> _step = [];
    private readonly Stack<float[]> _logitsPool = new();
    private RolloutResult?[] _results = [];
    private int _completed;
    private long _generated;
    private RolloutRequest _request = null!;
    private SamplingParams _params;
    private byte[][] _stops = [];
    private int _maxStop;
    private IProgress<int>? _progress;

    /// <summary>
    /// Samples <see cref="RolloutRequest.SamplesPerPrompt"/> responses for every prompt. Returns them ordered by
    /// (PromptIndex, SampleIndex); <paramref name="completed"/> receives the number of finished rollouts as they finish.
    /// </summary>
    /// <exception cref="BupoException">A bad request (empty prompt, token outside the vocabulary, a prompt that does not fit the context).</exception>
    /// <exception cref="OperationCanceledException"><paramref name="ct"/> was cancelled (checked before every decode).</exception>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loop: skip the unoptimized JIT tier
    public IReadOnlyList<RolloutResult> Generate(RolloutRequest request, IProgress<int>? completed = null, CancellationToken ct = default)
    {
        ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(request);
        if (request.PromptTokens is null) throw new BupoException("the request has no prompt list");
        if (request.Sampling is null) throw new BupoException("the request has no sampling settings");
        request.Sampling.Validate();
        int p = request.PromptTokens.Count;
        int g = request.SamplesPerPrompt;
        if (g < 1) throw new BupoException($"samples per prompt must be >= 1, got {g}");
        if (p == 0) { LastStats = new RolloutStats(0, 0); return []; }
        if ((long)p * g > int.MaxValue / 2) throw new BupoException($"{p} prompts x {g} samples is too many rollouts for one request");
        long setupStart = Stopwatch.GetTimestamp();
        int vocab = Awake().VocabSize;
        int maxPrompt = 0;
        for (int i = 0; i < p; i++)
        {
            var prompt = request.PromptTokens[i];
            if (prompt is null || prompt.Length == 0) throw new BupoException($"prompt {i} is empty (it needs at least one token, e.g. BOS)");
            foreach (var t in prompt)
                if ((uint)t >= (uint)vocab) throw new BupoException($"prompt {i} holds token {t}, outside the vocabulary [0, {vocab})");
            maxPrompt = Math.Max(maxPrompt, prompt.Length);
        }
        int maxTokens = request.Sampling.MaxTokens;
        int slots = EnsureContext(request, maxPrompt, (int)Math.Min(_options.Parallel, (long)p * g));
        double setupSeconds = Stopwatch.GetElapsedTime(setupStart).TotalSeconds;
        var ctx = _ctx!;

        // ---- per-request state
        _request = request;
        _params = new SamplingParams(request.Sampling);
        _stops = request.Sampling.StopStrings.Select(s => Encoding.UTF8.GetBytes(s)).ToArray();
        _maxStop = _stops.Length == 0 ? 0 : _stops.Max(s => s.Length);
        _progress = completed;
        _results = new RolloutResult?[p * g];
        _completed = 0;
        _generated = 0;
        PrepareSlots(slots, maxTokens);
        _prefilling.Clear();
        _pendingStart.Clear();
        var prompts = new int[p][];
        for (int i = 0; i < p; i++) prompts[i] = request.PromptTokens[i].ToArray();
        int nextPrompt = 0;
        long promptTokens = 0;
        int decodeCalls = 0;
        long decodeTicks = 0, sampleTicks = 0;
        var batch = _batch!;
        ctx.Clear();
        long start = Stopwatch.GetTimestamp();
        try
        {
            while (true)
            {
                // ---- refill: pending samples of prefilled groups first, then new prompt groups
                while (_free.Count > 0)
                {
                    if (_pendingStart.Count > 0)
                    {
                        var grp = _pendingStart[0];
                        Launch(grp, _free.Pop(), copyPrompt: true);
                        continue;
                    }
                    if (nextPrompt < p && _free.Count > Claimed(g))
                    {
                        var grp = new Group { Prompt = nextPrompt, Tokens = prompts[nextPrompt] };
                        nextPrompt++;
                        int s = _free.Pop();
                        grp.Holder = s;
                        _slots[s].State = SlotState.Prefilling;
                        _slots[s].Group = grp;
                        _prefilling.Add(grp);
                        continue;
                    }
                    break;
                }

                // ---- one batch. Unified cache: a token per live sequence, then prefill tokens of admitted prompts (one
                // micro-batch). Streams: llama.cpp splits a batch into equal-length per-sequence rounds, so mixing 1-token
                // and 128-token sequences costs extra micro-batches: prefill goes alone first (whole prompts where they
                // fit), the generation step after.
                batch.Clear();
                _step.Clear();
                bool prefillOnly = !_unified && _prefilling.Count > 0;
                if (!prefillOnly)
                {
                    for (int s = 0; s < _slots.Length; s++)
                    {
                        var slot = _slots[s];
                        if (slot.State != SlotState.Live) continue;
                        slot.BatchIndex = batch.Add(slot.Tokens[slot.Count - 1], slot.Group!.Tokens.Length + slot.Count - 1, s, true);
                        _step.Add(s);
                    }
                }
                for (int i = 0; i < _prefilling.Count && batch.Count < batch.Capacity; i++)
                {
                    var grp = _prefilling[i];
                    int left = grp.Tokens.Length - grp.Cursor;
                    // streams: do not split a prompt across decodes unless it alone exceeds the batch
                    if (prefillOnly && batch.Count > 0 && left > batch.Capacity - batch.Count) break;
                    while (grp.Cursor < grp.Tokens.Length && batch.Count < batch.Capacity)
                    {
                        bool last = grp.Cursor == grp.Tokens.Length - 1;
                        int index = batch.Add(grp.Tokens[grp.Cursor], grp.Cursor, grp.Holder, last);
                        if (last) grp.LogitsIndex = index;
                        grp.Cursor++;
                        promptTokens++;
                    }
                }
                if (batch.Count == 0) break;
                ct.ThrowIfCancellationRequested();

                long t0 = Stopwatch.GetTimestamp();
                ctx.Decode(batch);
                long t1 = Stopwatch.GetTimestamp();
                decodeTicks += t1 - t0;
                decodeCalls++;

                // ---- sample every live sequence (rows in parallel), then the bookkeeping in slot order
                SampleStep(ctx);
                sampleTicks += Stopwatch.GetTimestamp() - t1;
                foreach (int s in _step)
                {
                    var slot = _slots[s];
                    if (Record(slot, slot.Sampled, slot.SampledRaw, slot.SampledSampling)) Finish(s);
                }

                // ---- prompts whose prefill completed: keep their logits row, start their first sample in the holder slot
                for (int i = 0; i < _prefilling.Count; i++)
                {
                    var grp = _prefilling[i];
                    if (grp.Cursor < grp.Tokens.Length) continue;
                    var row = ctx.GetLogits(grp.LogitsIndex);
                    grp.Logits = _logitsPool.Count > 0 ? _logitsPool.Pop() : new float[row.Length];
                    row.CopyTo(grp.Logits);
                    _prefilling.RemoveAt(i--);
                    _pendingStart.Add(grp);
                    Launch(grp, grp.Holder, copyPrompt: false);
                }
            }
        }
        catch
        {
            ctx.Clear();
            throw;
        }
        finally
        {
            foreach (var grp in _pendingStart) Release(grp);
            foreach (var grp in _prefilling) Release(grp);
            _pendingStart.Clear();
            _prefilling.Clear();
            _progress = null;
        }
        double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        if (_completed != _results.Length) throw new InvalidOperationException($"rollout engine: {_completed} of {_results.Length} rollouts finished");
        ctx.Clear();
        LastStats = new RolloutStats(_generated, seconds)
        {
            PromptTokens = promptTokens,
            DecodeCalls = decodeCalls,
            SetupSeconds = setupSeconds,
            DecodeSeconds = decodeTicks / (double)Stopwatch.Frequency,
            SampleSeconds = sampleTicks / (double)Stopwatch.Frequency,
        };
        var results = _results;
        _results = [];
        return results!;
    }

    /// <summary>Slots claimed by admitted groups for samples not started yet (a prefilling group's first sample has its holder).</summary>
    private int Claimed(int g)
    {
        int claimed = 0;
        foreach (var grp in _prefilling) claimed += g - 1;
        foreach (var grp in _pendingStart) claimed += g - grp.NextSample;
        return claimed;
    }

    private void Release(Group grp)
    {
        if (grp.Logits != null) _logitsPool.Push(grp.Logits);
        grp.Logits = null;
    }

    /// <summary>
    /// Starts samples of <paramref name="grp"/> in <paramref name="s"/> until one survives its first token or the group has
    /// none left (a sample can end on its first token: end of generation, max tokens 1, a stop string).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loop: skip the unoptimized JIT tier
    private void Launch(Group grp, int s, bool copyPrompt)
    {
        var ctx = _ctx!;
        var slot = _slots[s];
        int len = grp.Tokens.Length;
        if (copyPrompt)
        {
            if (_unified)
            {
                ctx.SequenceCopy(grp.Holder, s, 0, len);
            }
            else
            {
                // Streams: the copy takes the holder's whole stream (done at the next decode); drop what it generated.
                ctx.SequenceCopy(grp.Holder, s, -1, -1);
                ctx.SequenceRemove(s, len, -1);
            }
        }
        while (true)
        {
            int sample = grp.NextSample++;
            slot.State = SlotState.Live;
            slot.Group = grp;
            slot.Sample = sample;
            slot.Count = 0;
            slot.TextLength = 0;
            slot.Rng = new RolloutRng(RolloutRng.SequenceSeed(_request.Seed, grp.Prompt, sample));
            int tok = _samplers[0].Sample(grp.Logits!, _params, ref slot.Rng, out float raw, out float samp);
            if (grp.NextSample == _request.SamplesPerPrompt)
            {
                _pendingStart.Remove(grp);
                Release(grp);
            }
            if (!Record(slot, tok, raw, samp)) return;
            Complete(s);
            if (grp.NextSample < _request.SamplesPerPrompt)
            {
                ctx.SequenceRemove(s, len, -1);
                continue;
            }
            ctx.SequenceRemove(s, -1, -1);
            slot.State = SlotState.Free;
            slot.Group = null;
            _free.Push(s);
            return;
        }
    }

    /// <summary>Appends a sampled token to the slot; true when the rollout is finished.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private bool Record(Slot slot, int tok, float raw, float samp)
    {
        int c = slot.Count;
        slot.Tokens[c] = tok;
        slot.Raw[c] = raw;
        slot.Sampling[c] = samp;
        slot.Count = c + 1;
        _generated++;
        if (_isEog[tok] && !_request.Sampling.IgnoreEndOfSequence) { _finish = FinishReason.EndOfSequence; return true; }
        if (_stops.Length > 0 && AppendAndCheckStop(slot, tok)) { _finish = FinishReason.StopString; return true; }
        if (slot.Count >= _request.Sampling.MaxTokens) { _finish = FinishReason.MaxTokens; return true; }
        return false;
    }

    private FinishReason _finish;

    private byte[] Piece(int tok) => _pieces[tok] ??= _model!.Vocab.TokenToPieceBytes(tok, special: false);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loop: skip the unoptimized JIT tier
    private bool AppendAndCheckStop(Slot slot, int tok)
    {
        var piece = Piece(tok);
        if (piece.Length == 0) return false;
        int len = slot.TextLength;
        if (slot.Text.Length < len + piece.Length) Array.Resize(ref slot.Text, Math.Max(slot.Text.Length * 2, len + piece.Length + 64));
        piece.CopyTo(slot.Text, len);
        slot.TextLength = len += piece.Length;
        int from = Math.Max(0, len - piece.Length - _maxStop + 1);
        var tail = slot.Text.AsSpan(from, len - from);
        foreach (var stop in _stops)
            if (tail.IndexOf(stop) >= 0) return true;
        return false;
    }

    /// <summary>A live slot finished after a decode: store the rollout, then refill the slot from its group or free it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loop: skip the unoptimized JIT tier
    private void Finish(int s)
    {
        var slot = _slots[s];
        var grp = slot.Group!;
        Complete(s);
        if (grp.NextSample < _request.SamplesPerPrompt)
        {
            _ctx!.SequenceRemove(s, grp.Tokens.Length, -1);
            Launch(grp, s, copyPrompt: false);
            return;
        }
        _ctx!.SequenceRemove(s, -1, -1);
        slot.State = SlotState.Free;
        slot.Group = null;
        _free.Push(s);
    }

    private void Complete(int s)
    {
        var slot = _slots[s];
        var grp = slot.Group!;
        int n = slot.Count;
        var tokens = slot.Tokens.AsSpan(0, n).ToArray();
        int textTokens = _finish == FinishReason.EndOfSequence ? n - 1 : n;
        string text = DecodeText(tokens.AsSpan(0, textTokens));
        _results[grp.Prompt * _request.SamplesPerPrompt + slot.Sample] = new RolloutResult(grp.Prompt, slot.Sample, grp.Tokens, tokens,
            slot.Raw.AsSpan(0, n).ToArray(), slot.Sampling.AsSpan(0, n).ToArray(), text, _finish);
        _completed++;
        _progress?.Report(_completed);
    }

    private string DecodeText(ReadOnlySpan<int> tokens)
    {
        int bytes = 0;
        foreach (var t in tokens) bytes += Piece(t).Length;
        if (bytes == 0) return "";
        var buf = bytes <= 4096 ? stackalloc byte[bytes] : new byte[bytes];
        int o = 0;
        foreach (var t in tokens)
        {
            var piece = Piece(t);
            piece.CopyTo(buf[o..]);
            o += piece.Length;
        }
        return Encoding.UTF8.GetString(buf);
    }

    /// <summary>Samples the logits row of every slot in <see cref="_step"/>; rows are split over the sampling threads.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loop: skip the unoptimized JIT tier
    private void SampleStep(LlamaContext ctx)
    {
        int vocab = ctx.VocabSize;
        foreach (int s in _step)
        {
            var row = ctx.GetLogits(_slots[s].BatchIndex);
            _slots[s].LogitsPtr = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetReference(row));
        }
        int rows = _step.Count;
        int workers = Math.Min(_samplers.Length, rows);
        // Threads pay off only when there is enough work per row set.
        if (workers > 1 && (long)rows * vocab < 64 * 1024) workers = 1;
        if (workers <= 1)
        {
            var sampler = _samplers[0];
            foreach (int s in _step) SampleRow(sampler, _slots[s], vocab);
            return;
        }
        Parallel.For(0, workers, new ParallelOptions { MaxDegreeOfParallelism = workers }, w =>
        {
            var sampler = _samplers[w];
            for (int i = w; i < rows; i += workers) SampleRow(sampler, _slots[_step[i]], vocab);
        });
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loop: skip the unoptimized JIT tier
    private void SampleRow(TokenSampler sampler, Slot slot, int vocab)
    {
        var row = new ReadOnlySpan<float>((void*)slot.LogitsPtr, vocab);
        slot.Sampled = sampler.Sample(row, _params, ref slot.Rng, out slot.SampledRaw, out slot.SampledSampling);
    }

    private void PrepareSlots(int count, int maxTokens)
    {
        if (_slots.Length != count) _slots = new Slot[count];
        for (int i = 0; i < count; i++)
        {
            var slot = _slots[i] ??= new Slot();
            if (slot.Tokens.Length < maxTokens || slot.Tokens.Length > 4 * maxTokens + 1024)
            {
                slot.Tokens = new int[maxTokens];
                slot.Raw = new float[maxTokens];
                slot.Sampling = new float[maxTokens];
            }
            slot.State = SlotState.Free;
            slot.Group = null;
        }
        _free.Clear();
        for (int i = count - 1; i >= 0; i--) _free.Push(i);
    }

    // ------------------------------------------------------------------ context sizing

    /// <summary>
    /// Makes sure a context fits the request and returns the number of slots to use. Derived size (ContextSize 0):
    /// slots x (longest prompt + max tokens) cells, per-sequence capacity rounded up to 256. A fixed size: as many slots as fit.
    /// </summary>
    private int EnsureContext(RolloutRequest request, int maxPrompt, int slots)
    {
        int maxTokens = request.Sampling.MaxTokens;
        long perSeq = (long)maxPrompt + maxTokens;
        int trainCtx = _model!.TrainContextSize;
        if (_options.ContextSize > 0)
        {
            for (int i = 0; i < request.PromptTokens.Count; i++)
            {
                int len = request.PromptTokens[i].Length;
                if (len + (long)maxTokens > _options.ContextSize)
                    throw new BupoException($"prompt {i} has {len} tokens: with max tokens {maxTokens} it needs {len + (long)maxTokens} KV cells, " +
                                            $"more than the context size {_options.ContextSize}");
            }
            slots = (int)Math.Min(slots, _options.ContextSize / perSeq);
        }
        else if (trainCtx > 0)
        {
            for (int i = 0; i < request.PromptTokens.Count; i++)
            {
                int len = request.PromptTokens[i].Length;
                if (len > trainCtx)
                    throw new BupoException($"prompt {i} has {len} tokens, longer than the model's context ({trainCtx} tokens): truncate it");
            }
        }
        long cellsPerSeq = (perSeq + 255) / 256 * 256;
        long needed = _options.ContextSize > 0 ? _options.ContextSize : cellsPerSeq * slots;
        if (needed > int.MaxValue) throw new BupoException($"{slots} sequences x {cellsPerSeq} cells is too large a KV cache: lower parallel or max tokens");
        int batchSize = Math.Max(512, slots);

        if (_ctx != null)
        {
            long perSlotHave = _unified ? _ctx.ContextSize / Math.Max(1, slots) : _ctx.ContextSize / _ctx.MaxSequences;
            bool fits = _ctx.MaxSequences >= slots && perSlotHave >= perSeq && _ctx.BatchSize >= slots
                        && (_options.ContextSize == 0 || _ctx.ContextSize >= _options.ContextSize);
            // Non-unified: each stream must be big enough; with more streams than slots the extra ones stay empty.
            if (fits) return slots;
            DisposeContext();
        }
        var ctx = LlamaContext.Create(_model!, new LlamaContextOptions
        {
            ContextSize = (int)needed,
            BatchSize = batchSize,
            UBatchSize = 512,
            MaxSequences = slots,
            Threads = _options.Threads,
            UnifiedKvCache = _unified,
            KvCacheType = _options.KvCacheType,
            FlashAttention = _options.KvCacheType == BuPO.Hybrid.Gguf.GgmlType.F32 ? false : null,
        });
        try
        {
            if (_lora != null) ctx.ApplyLora(_lora, _loraScale);
            _batch = new LlamaBatch(ctx.BatchSize);
        }
        catch
        {
            ctx.Dispose();
            throw;
        }
        _ctx = ctx;
        return slots;
    }

    private void DisposeContext()
    {
        _batch?.Dispose();
        _batch = null;
        _ctx?.Dispose();
        _ctx = null;
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    /// <summary>Frees the context, the adapter and the model (unless the caller owns it).</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        DisposeContext();
        _lora?.Dispose();
        if (_ownsModel) _model?.Dispose();
    }
}
