using System.Diagnostics;
using XGenMM.LoadTest.Clients;
using XGenMM.LoadTest.Load;

namespace XGenMM.LoadTest.Reporting;

/// <summary>A status line while a point runs: requests done and failed, in flight, req/s and output tok/s so far.</summary>
public sealed class ConsoleProgress(TextWriter output) : IProgressSink, IDisposable
{
    private readonly Lock _gate = new();
    private readonly bool _interactive = !Console.IsOutputRedirected && output == Console.Out;
    private Timer? _timer;
    private PointPlan? _plan;
    private long _started;
    private int _issued, _done, _failed;
    private long _tokens;

    public void PointStarted(PointPlan plan)
    {
        lock (_gate)
        {
            _plan = plan;
            _started = Stopwatch.GetTimestamp();
            _issued = _done = _failed = 0;
            _tokens = 0;
            _timer?.Dispose();
            _timer = new Timer(_ => Print(final: false), null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(_interactive ? 1 : 5));
        }
    }

    public void RequestStarted() => Interlocked.Increment(ref _issued);

    public void RequestEnded(RequestRecord record)
    {
        Interlocked.Increment(ref _done);
        if (!record.Success) Interlocked.Increment(ref _failed);
        else Interlocked.Add(ref _tokens, record.OutputTokens);
    }

    public void PointEnded(PointPlan plan)
    {
        lock (_gate)
        {
            _timer?.Dispose();
            _timer = null;
        }
        Print(final: true);
    }

    private void Print(bool final)
    {
        lock (_gate)
        {
            if (_plan is null) return;
            double elapsed = Stopwatch.GetElapsedTime(_started).TotalSeconds;
            int done = Volatile.Read(ref _done), issued = Volatile.Read(ref _issued);
            string line = Fmt.Inv($"  [{_plan.Label}] {done}/{_plan.Requests} done, {Volatile.Read(ref _failed)} failed, {issued - done} in flight, ") +
                Fmt.Inv($"{Fmt.N((done - Volatile.Read(ref _failed)) / Math.Max(elapsed, 1e-9), "0.00")} req/s, {Fmt.N(Interlocked.Read(ref _tokens) / Math.Max(elapsed, 1e-9), "0")} tok/s, {Fmt.N(elapsed, "0.0")} s");
            if (_interactive)
            {
                output.Write("\r" + line.PadRight(110));
                if (final) output.WriteLine();
            }
            else output.WriteLine(line);
        }
    }

    public void Dispose()
    {
        _timer?.Dispose();
    }
}
