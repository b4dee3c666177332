using System.Diagnostics;

namespace XGenMM.Model.Kernels;

/// <summary>
/// A small persistent pool that runs one mat-mul at a time over every core: the caller and the workers claim chunks
/// of the job's units from a shared counter until none is left. Claimed, not split in fixed shares: on a machine with
/// as many cores as participants any other thread (a consumer woken by a streamed token, the GC, a timer) preempts one
/// participant for a time slice, and with fixed halves the whole product then waited for it (batch-1 decode steps
/// measured twice as long in the engine as alone). Workers spin for a short while after each job before they block,
/// because a decode step calls a mat-mul every few tens of microseconds and waking a blocked thread costs about as
/// much as a small product.
/// One job at a time: a caller that finds the pool busy (two engines in one process) runs its product alone instead
/// of queueing behind the other.
/// </summary>
internal sealed unsafe class KernelWorkers : IDisposable
{
    /// <summary>How long an idle worker keeps spinning before it blocks.</summary>
    private static readonly long SpinTicks = Stopwatch.Frequency / 5000; // 200 us

    private static readonly Lazy<KernelWorkers> SharedPool = new(() => new KernelWorkers(DefaultThreads()));

    /// <summary>The process-wide pool, one participant per core (at most 16).</summary>
    public static KernelWorkers Shared => SharedPool.Value;

    private readonly Thread[] _threads;
    private readonly ManualResetEventSlim[] _start;
    private readonly Lock _busy = new();
    private MatMulJob _job;
    private int _pending;
    // The next unclaimed unit of the running job, and how many units one claim takes.
    private int _next, _chunk;
    private volatile bool _stopping;

    public int Participants => _threads.Length + 1;

    public KernelWorkers(int participants)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(participants, 1);
        _threads = new Thread[participants - 1];
        _start = new ManualResetEventSlim[participants - 1];
        for (int i = 0; i < _threads.Length; i++)
        {
            _start[i] = new ManualResetEventSlim(false, spinCount: 1);
            int index = i + 1;
            _threads[i] = new Thread(() => Work(index)) { IsBackground = true, Name = $"xgenmm-kernel-{index}" };
            _threads[i].Start();
        }
    }

    private static int DefaultThreads() => Math.Clamp(Environment.ProcessorCount, 1, 16);

    /// <summary>Runs <paramref name="job"/> over all participants and returns when every share is done.</summary>
    public void Run(in MatMulJob job)
    {
        int participants = Participants;
        if (participants == 1 || job.Units < 2 || !_busy.TryEnter())
        {
            job.Execute(0, job.Units);
            return;
        }
        try
        {
            int used = Math.Min(participants, job.Units);
            _job = job;
            // About eight chunks per participant: small enough that the others absorb a preempted participant's part,
            // large enough that the shared counter is touched a few dozen times per product at most.
            _chunk = Math.Max(1, job.Units / (used * 8));
            _next = 0;
            Volatile.Write(ref _pending, used - 1);
            for (int i = 0; i < used - 1; i++) _start[i].Set();
            ExecuteChunks();
            var spinner = new SpinWait();
            while (Volatile.Read(ref _pending) != 0) spinner.SpinOnce(sleep1Threshold: -1);
        }
        finally
        {
            _busy.Exit();
        }
    }

    /// <summary>Runs <paramref name="units"/> independent units of <paramref name="work"/> over all participants.</summary>
    public void Run(IParallelWork work, int units) => Run(new MatMulJob { Work = work, Units = units });

    private void ExecuteChunks()
    {
        int units = _job.Units, chunk = _chunk;
        while (true)
        {
            int from = Interlocked.Add(ref _next, chunk) - chunk;
            if (from >= units) return;
            _job.Execute(from, Math.Min(units, from + chunk));
        }
    }

    private void Work(int index)
    {
        var start = _start[index - 1];
        while (true)
        {
            long spinUntil = Stopwatch.GetTimestamp() + SpinTicks;
            while (!start.IsSet && Stopwatch.GetTimestamp() < spinUntil) Thread.SpinWait(8);
            start.Wait();
            start.Reset();
            if (_stopping) return;
            ExecuteChunks();
            Interlocked.Decrement(ref _pending);
        }
    }

    public void Dispose()
    {
        _stopping = true;
        foreach (var s in _start) s.Set();
        foreach (var t in _threads) t.Join();
        foreach (var s in _start) s.Dispose();
    }
}
