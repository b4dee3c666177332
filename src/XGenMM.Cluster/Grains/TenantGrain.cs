using System.Globalization;
using XGenMM.Cluster.Abstractions;

namespace XGenMM.Cluster.Grains;

/// <summary>Persisted part of a tenant: its limits and its daily usage ledger.</summary>
[GenerateSerializer, Alias("xgenmm.TenantState")]
public sealed class TenantState
{
    [Id(0)] public TenantLimits? Limits { get; set; }
    [Id(1)] public Dictionary<string, TenantUsageDay> Days { get; set; } = [];
}

/// <summary>
/// The one authority for a tenant's limits across every gateway: requests and tokens per sliding minute,
/// concurrent streams (leases), images per request; and the usage ledger by UTC day, persisted in grain storage.
/// Non-reentrant, so each decision sees the previous one.
/// </summary>
internal sealed class TenantGrain([PersistentState("tenant", "tenants")] IPersistentState<TenantState> state, TimeProvider time) : Grain, ITenantGrain
{
    private static readonly TimeSpan Window = TimeSpan.FromMinutes(1);
    /// <summary>A lease whose gateway never returned it (crash) stops counting after this.</summary>
    private static readonly TimeSpan LeaseLifetime = TimeSpan.FromMinutes(15);
    private const int MaxLedgerDays = 400;

    private readonly Dictionary<string, DateTimeOffset> _leases = new(StringComparer.Ordinal);
    private readonly Queue<DateTimeOffset> _requests = new();
    private readonly Queue<(DateTimeOffset At, long Tokens)> _tokens = new();
    private long _tokensInWindow;

    private TenantLimits Limits => state.State.Limits ?? new TenantLimits();

    public async Task SetLimits(TenantLimits limits)
    {
        if (limits.RequestsPerMinute < 1 || limits.TokensPerMinute < 1 || limits.ConcurrentStreams < 1 || limits.MaxImagesPerRequest < 0)
            throw new ClusterRejectedException(RejectionKind.Invalid, "Tenant limits must be positive (max images per request may be 0).");
        if (limits == state.State.Limits) return;
        state.State.Limits = limits;
        await state.WriteStateAsync().ConfigureAwait(true);
    }

    public Task<TenantLimits> GetLimits() => Task.FromResult(Limits);

    public async Task<AdmissionTicket> Admit(int images, long estimatedTokens, CancellationToken cancellationToken = default)
    {
        var now = time.GetUtcNow();
        var limits = Limits;
        Expire(now);
        if (images > limits.MaxImagesPerRequest)
            return new AdmissionTicket(false, null, QuotaRejection.TooManyImages, 0,
                $"The request has {images} images; this tenant may send at most {limits.MaxImagesPerRequest} per request.");
        if (_leases.Count >= limits.ConcurrentStreams)
            return new AdmissionTicket(false, null, QuotaRejection.ConcurrentStreams, 1,
                $"This tenant already has {_leases.Count} requests in progress (limit {limits.ConcurrentStreams}).");
        if (_requests.Count >= limits.RequestsPerMinute)
            return new AdmissionTicket(false, null, QuotaRejection.RequestsPerMinute, RetryAfter(_requests.Peek(), now),
                $"This tenant has made {_requests.Count} requests in the last minute (limit {limits.RequestsPerMinute}).");
        if (estimatedTokens > limits.TokensPerMinute)
            return new AdmissionTicket(false, null, QuotaRejection.TokensPerMinute, 60,
                $"The request may use {estimatedTokens} tokens; this tenant's budget is {limits.TokensPerMinute} per minute. Lower max_tokens or the prompt.");
        if (_tokensInWindow + estimatedTokens > limits.TokensPerMinute)
            return new AdmissionTicket(false, null, QuotaRejection.TokensPerMinute, _tokens.Count > 0 ? RetryAfter(_tokens.Peek().At, now) : 1,
                $"This tenant has used {_tokensInWindow} of {limits.TokensPerMinute} tokens in the last minute; the request may need {estimatedTokens}.");

        string lease = Guid.NewGuid().ToString("N");
        _leases[lease] = now;
        _requests.Enqueue(now);
        _tokens.Enqueue((now, estimatedTokens));
        _tokensInWindow += estimatedTokens;
        var day = Day(now);
        state.State.Days[day.Key] = day.Value with { Requests = day.Value.Requests + 1 };
        try
        {
            // Not the caller's token: a write cut short could still land, so it finishes and a late ticket is undone below.
            await state.WriteStateAsync(CancellationToken.None).ConfigureAwait(true);
        }
        catch
        {
            // The storage is unreachable (or the state went stale): the caller gets the failure, so the lease must not
            // stay taken, or a storage outage would leave the tenant's stream slots held for the lease lifetime.
            // A write that failed may still have reached the store, so the ETag held here can be stale: the next
            // activation reads the state afresh, and the tenant recovers when the store does, without a restart.
            Release(lease, estimatedTokens, now);
            DeactivateOnIdle();
            throw;
        }
        if (cancellationToken.IsCancellationRequested)
        {
            // The caller gave up while the write was pending (its deadline passed): nobody holds this lease.
            Release(lease, estimatedTokens, now);
            cancellationToken.ThrowIfCancellationRequested();
        }
        return new AdmissionTicket(true, lease);
    }

    /// <summary>Undoes an admission whose ticket never reached its caller (the request count stays: it was made).</summary>
    private void Release(string lease, long estimatedTokens, DateTimeOffset now)
    {
        _leases.Remove(lease);
        _tokens.Enqueue((now, -estimatedTokens));
        _tokensInWindow -= estimatedTokens;
    }

    public async Task Complete(string leaseId, long estimatedTokens, UsageReport usage)
    {
        var now = time.GetUtcNow();
        if (!_leases.Remove(leaseId)) return; // unknown or already returned: never count twice
        // Charge what was really used against the minute budget (the estimate was taken at admission).
        long used = usage.PromptTokens + usage.ImageTokens + usage.CompletionTokens;
        long correction = used - estimatedTokens;
        if (correction != 0)
        {
            _tokens.Enqueue((now, correction));
            _tokensInWindow += correction;
        }
        var day = Day(now);
        state.State.Days[day.Key] = day.Value with
        {
            PromptTokens = day.Value.PromptTokens + usage.PromptTokens,
            CompletionTokens = day.Value.CompletionTokens + usage.CompletionTokens,
            ImageTokens = day.Value.ImageTokens + usage.ImageTokens,
        };
        foreach (var old in state.State.Days.Keys.Order(StringComparer.Ordinal).SkipLast(MaxLedgerDays).ToList()) state.State.Days.Remove(old);
        await state.WriteStateAsync().ConfigureAwait(true);
    }

    public Task<TenantUsageDay[]> GetUsage(int days)
    {
        var since = DateOnly.FromDateTime(time.GetUtcNow().UtcDateTime).AddDays(-Math.Clamp(days, 1, MaxLedgerDays) + 1);
        return Task.FromResult(state.State.Days.Values.Where(d => d.Day >= since).OrderBy(d => d.Day).ToArray());
    }

    private (string Key, TenantUsageDay Value) Day(DateTimeOffset now)
    {
        var date = DateOnly.FromDateTime(now.UtcDateTime);
        string key = date.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture);
        return (key, state.State.Days.TryGetValue(key, out var d) ? d : new TenantUsageDay(date, 0, 0, 0, 0));
    }

    private void Expire(DateTimeOffset now)
    {
        while (_requests.Count > 0 && now - _requests.Peek() >= Window) _requests.Dequeue();
        while (_tokens.Count > 0 && now - _tokens.Peek().At >= Window) _tokensInWindow -= _tokens.Dequeue().Tokens;
        foreach (var stale in _leases.Where(l => now - l.Value > LeaseLifetime).Select(l => l.Key).ToList()) _leases.Remove(stale);
    }

    private static double RetryAfter(DateTimeOffset oldest, DateTimeOffset now) => Math.Max(1, Math.Ceiling((oldest + Window - now).TotalSeconds));
}
