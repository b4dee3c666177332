using Orleans.Concurrency;
using Orleans.Runtime;
using XGenMM.Cluster.Abstractions;

namespace XGenMM.Cluster.Grains;

/// <summary>
/// The live list of decoders (key 0). Decoder silos report every second; a report older than
/// <see cref="StaleAfter"/> or from a silo that membership no longer lists as active is dropped, so routers never
/// see a dead or departing silo for long. The list is soft state: a new activation is refilled within a second.
/// </summary>
[Reentrant]
internal sealed class DecoderRegistryGrain(IClusterMembershipService membership) : Grain, IDecoderRegistryGrain
{
    public static readonly TimeSpan StaleAfter = TimeSpan.FromSeconds(5);
    private readonly Dictionary<string, DecoderLoadReport> _reports = new(StringComparer.Ordinal);

    public override Task OnActivateAsync(CancellationToken cancellationToken)
    {
        DelayDeactivation(TimeSpan.FromDays(365));
        return Task.CompletedTask;
    }

    public Task Report(DecoderLoadReport report)
    {
        _reports[report.DecoderKey] = report with { At = DateTimeOffset.UtcNow };
        return Task.CompletedTask;
    }

    public Task Remove(string decoderKey)
    {
        _reports.Remove(decoderKey);
        return Task.CompletedTask;
    }

    public Task<DecoderLoadReport[]> List(CancellationToken cancellationToken = default)
    {
        var now = DateTimeOffset.UtcNow;
        var active = membership.CurrentSnapshot.Members.Values
            .Where(m => m.Status == SiloStatus.Active).Select(m => m.SiloAddress.ToParsableString()).ToHashSet(StringComparer.Ordinal);
        foreach (var stale in _reports.Values.Where(r => now - r.At > StaleAfter || !active.Contains(r.Silo)).Select(r => r.DecoderKey).ToList())
            _reports.Remove(stale);
        return Task.FromResult(_reports.Values.OrderBy(r => r.DecoderKey, StringComparer.Ordinal).ToArray());
    }
}
