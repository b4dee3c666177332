using System.Collections.Concurrent;
using XGenMM.LoadTest.Cli;
using XGenMM.LoadTest.Clients;
using XGenMM.LoadTest.Workload;

namespace XGenMM.LoadTest.Load;

/// <summary>One load point: a closed loop at a concurrency or an open loop at a rate.</summary>
public sealed record PointPlan(string Label, LoadMode Mode, int Requests, double DurationSeconds)
{
    public int Concurrency { get; init; } = 1;
    public double Rate { get; init; } = 1;
    public double Burstiness { get; init; } = 1;
    public int? MaxConcurrency { get; init; }
    public int Seed { get; init; } = 1;
}

/// <summary>Watches a point as it runs (the console progress line; tests may count).</summary>
public interface IProgressSink
{
    void PointStarted(PointPlan plan);
    void RequestStarted();
    void RequestEnded(RequestRecord record);
    void PointEnded(PointPlan plan);
}

/// <summary>
/// Issues the requests of one point and waits for them. Bounded by a request count and a duration: no request starts
/// after either is reached, and what is in flight then gets the drain timeout to finish before it is cancelled (and
/// counted as "cancelled"). Each request has its own timeout ("timeout").
/// </summary>
public sealed class PointDriver(ITurnClient client, ConversationSource source, RunClock clock, TimeSpan requestTimeout, TimeSpan drainTimeout, IProgressSink? progress = null)
{
    /// <summary>How long a closed-loop user waits after a refusal (429 or 503) before its next request: a client that
    /// backs off a little instead of spinning on refusals that take a millisecond each (0 = no pause).</summary>
    public TimeSpan RefusalPause { get; init; }

    /// <summary>A closed-loop user waits the refusal's Retry-After instead (as OpenAI's client libraries do), at most
    /// <see cref="MaxRetryAfter"/>; <see cref="RefusalPause"/> when the refusal gave none.</summary>
    public bool HonorRetryAfter { get; init; }

    public static readonly TimeSpan MaxRetryAfter = TimeSpan.FromSeconds(60);

    /// <summary>How long a closed-loop user waits after <paramref name="record"/> before its next request.</summary>
    internal TimeSpan PauseAfter(RequestRecord record) =>
        record.Status is not (429 or 503) ? TimeSpan.Zero
        : HonorRetryAfter && record.RetryAfterSeconds is double seconds ? TimeSpan.FromSeconds(Math.Min(seconds, MaxRetryAfter.TotalSeconds))
        : RefusalPause;

    public async Task<IReadOnlyList<RequestRecord>> RunAsync(PointPlan plan, CancellationToken cancellationToken)
    {
        var records = new ConcurrentBag<RequestRecord>();
        using var drain = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        double deadline = clock.Now + plan.DurationSeconds;
        progress?.PointStarted(plan);
        Task issuing = plan.Mode == LoadMode.Closed
            ? ClosedAsync(plan, deadline, records, drain.Token)
            : OpenAsync(plan, deadline, records, drain.Token);

        // Issuing ends when the count or the duration is reached; the stragglers then get the drain timeout.
        await Task.WhenAny(issuing, DrainWindowAsync(issuing, deadline)).ConfigureAwait(false);
        if (!issuing.IsCompleted) await drain.CancelAsync().ConfigureAwait(false);
        await issuing.ConfigureAwait(false);
        cancellationToken.ThrowIfCancellationRequested();
        progress?.PointEnded(plan);
        return [.. records.OrderBy(r => r.Start)];

        async Task DrainWindowAsync(Task work, double end)
        {
            double wait = Math.Max(0, end - clock.Now);
            await Task.WhenAny(work, Task.Delay(TimeSpan.FromSeconds(wait), cancellationToken)).ConfigureAwait(false);
            if (!work.IsCompleted) await Task.WhenAny(work, Task.Delay(drainTimeout, cancellationToken)).ConfigureAwait(false);
        }
    }

    private async Task ClosedAsync(PointPlan plan, double deadline, ConcurrentBag<RequestRecord> records, CancellationToken cancellationToken)
    {
        int issued = 0;
        async Task User()
        {
            while (!cancellationToken.IsCancellationRequested && clock.Now < deadline && Interlocked.Increment(ref issued) <= plan.Requests)
            {
                var request = source.Next();
                var record = await ExecuteAsync(request, double.NaN, records, cancellationToken).ConfigureAwait(false);
                var pause = PauseAfter(record);
                if (pause > TimeSpan.Zero)
                {
                    try
                    {
                        await Task.Delay(pause, cancellationToken).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException)
                    {
                        return;
                    }
                }
            }
        }
        await Task.WhenAll(Enumerable.Range(0, plan.Concurrency).Select(_ => Task.Run(User, CancellationToken.None))).ConfigureAwait(false);
    }

    private async Task OpenAsync(PointPlan plan, double deadline, ConcurrentBag<RequestRecord> records, CancellationToken cancellationToken)
    {
        var schedule = Arrivals.Schedule(plan.Requests, plan.Rate, plan.Burstiness, new Random(plan.Seed));
        using var slots = plan.MaxConcurrency is int max ? new SemaphoreSlim(max, max) : null;
        var inFlight = new List<Task>(plan.Requests);
        double origin = clock.Now;
        foreach (double offset in schedule)
        {
            double due = origin + offset;
            if (due >= deadline || cancellationToken.IsCancellationRequested) break;
            double wait = due - clock.Now;
            if (wait > 0)
            {
                try
                {
                    await Task.Delay(TimeSpan.FromSeconds(wait), cancellationToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
            }
            if (slots is not null)
            {
                try
                {
                    await slots.WaitAsync(cancellationToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
            }
            var request = source.Next();
            inFlight.Add(Task.Run(async () =>
            {
                try
                {
                    await ExecuteAsync(request, due, records, cancellationToken).ConfigureAwait(false);
                }
                finally
                {
                    slots?.Release();
                }
            }, CancellationToken.None));
        }
        await Task.WhenAll(inFlight).ConfigureAwait(false);
    }

    private async Task<RequestRecord> ExecuteAsync(TurnRequest request, double scheduled, ConcurrentBag<RequestRecord> records, CancellationToken cancellationToken)
    {
        var record = new RequestRecord
        {
            Tenant = request.Tenant.Label,
            Turn = request.Turn,
            Images = request.ImageCount,
            InputWords = request.InputWords,
            Scheduled = scheduled,
        };
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(requestTimeout);
        progress?.RequestStarted();
        record.Start = clock.Now;
        // A closed loop has no schedule: a user sends when its last answer is in.
        if (double.IsNaN(scheduled)) record.Scheduled = record.Start;
        try
        {
            await client.SendAsync(request, record, clock, timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            record.Fail(null, "timeout", $"No complete answer within {requestTimeout.TotalSeconds:0.#} s.");
        }
        catch (OperationCanceledException)
        {
            record.Fail(null, "cancelled", "The point ended (duration reached and drain timeout over) before the answer did.");
        }
#pragma warning disable CA1031 // A load generator records any failure of one request and carries on.
        catch (Exception e)
#pragma warning restore CA1031
        {
            record.Fail(null, "client " + e.GetType().Name, e.Message);
        }
        if (record.End < record.Start) record.End = clock.Now;
        records.Add(record);
        source.Answered(request, record);
        progress?.RequestEnded(record);
        return record;
    }
}
