using System.Collections.Concurrent;
using System.Runtime.ExceptionServices;
using System.Runtime.Intrinsics.X86;
using BuPO.Hybrid.Llama.Native;
using LLama.Native;

namespace BuPO.Hybrid.Llama;

/// <summary>
/// The thread a context's decodes run on. On x86 CPUs with AMX (Sapphire Rapids and later) ggml's quantized matmuls
/// use AMX tiles and configure a thread's tiles only once (ggml_tile_config_init keeps a thread_local "configured" flag
/// and never checks again), so any other AMX user on the same thread breaks it: libtorch's oneDNN runs bfloat16 matmuls
/// on AMX and releases the tiles after each kernel, and ggml's next tile instruction on that thread then raises SIGILL,
/// killing the process (a training run alternates llama.cpp rollouts and libtorch updates on one thread). On such CPUs
/// each context's decodes run on a background thread of that context that runs nothing but llama.cpp (one per context,
/// so contexts decoding side by side stay side by side); elsewhere on the caller's own thread.
/// </summary>
internal sealed class LlamaComputeThread : IDisposable
{
    /// <summary>True when the CPU has AMX (CPUID leaf 7 EDX bit 24, AMX-TILE) and decodes therefore run on a compute thread.</summary>
    internal static bool Isolated { get; } = X86Base.IsSupported && (X86Base.CpuId(7, 0).Edx & (1 << 24)) != 0;

    // One per compute thread (thread-static), for the thread's lifetime: its event is never disposed early.
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "lives as long as its thread")]
    private sealed class Job
    {
        public SafeLLamaContextHandle? Context;
        public LLamaNativeBatch Batch;
        public int Result;
        public ExceptionDispatchInfo? Error;
        public readonly ManualResetEventSlim Done = new(false);
    }

    private readonly BlockingCollection<Job> _jobs = new();
    private readonly Thread? _thread;
    // One job per calling thread: a decode allocates nothing, and a caller has at most one decode in flight.
    [ThreadStatic] private static Job? t_job;

    /// <summary>A compute thread when <see cref="Isolated"/>; else decodes run on the caller's thread.</summary>
    internal LlamaComputeThread()
    {
        if (!Isolated) return;
        _thread = new Thread(Run) { IsBackground = true, Name = "llama.cpp compute" };
        _thread.Start();
    }

    /// <summary>llama_decode, on the compute thread when <see cref="Isolated"/>; returns its return value.</summary>
    internal int Decode(SafeLLamaContextHandle context, LLamaNativeBatch batch)
    {
        if (_thread is null || Thread.CurrentThread == _thread) return LlamaNative.llama_decode(context, batch);
        var job = t_job ??= new Job();
        job.Context = context;
        job.Batch = batch;
        job.Error = null;
        job.Done.Reset();
        _jobs.Add(job);
        job.Done.Wait(); // the caller's batch and context stay alive: the caller is blocked here holding them
        job.Context = null;
        job.Error?.Throw();
        return job.Result;
    }

    private void Run()
    {
        foreach (var job in _jobs.GetConsumingEnumerable())
        {
            try { job.Result = LlamaNative.llama_decode(job.Context!, job.Batch); }
            catch (Exception e) { job.Error = ExceptionDispatchInfo.Capture(e); }
            finally { job.Done.Set(); }
        }
    }

    /// <summary>Ends the compute thread once its queued decodes are done (none are: the context calls this when disposed).</summary>
    public void Dispose()
    {
        _jobs.CompleteAdding();
        _thread?.Join();
        _jobs.Dispose();
    }
}
