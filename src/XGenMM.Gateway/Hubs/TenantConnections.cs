using System.Collections.Concurrent;

namespace XGenMM.Gateway.Hubs;

/// <summary>
/// SignalR connections each tenant holds open on this gateway, bounded by
/// <see cref="Hosting.RequestLimits.MaxConnectionsPerTenant"/>: a connection costs the gateway memory and a socket
/// whether or not it streams, so one key must not be able to open them without end (a tenant's streams are bounded
/// separately, by its concurrent-stream quota).
/// </summary>
public sealed class TenantConnections
{
    private readonly ConcurrentDictionary<string, int> _open = new(StringComparer.Ordinal);

    /// <summary>Counts a new connection of <paramref name="tenant"/> unless it already holds <paramref name="limit"/>.</summary>
    public bool TryOpen(string tenant, int limit)
    {
        while (true)
        {
            int current = _open.GetOrAdd(tenant, 0);
            if (current >= limit) return false;
            if (_open.TryUpdate(tenant, current + 1, current)) return true;
        }
    }

    public void Close(string tenant)
    {
        while (_open.TryGetValue(tenant, out int current) && !_open.TryUpdate(tenant, Math.Max(0, current - 1), current)) { }
    }

    /// <summary>Connections <paramref name="tenant"/> holds now.</summary>
    public int Open(string tenant) => _open.TryGetValue(tenant, out int n) ? n : 0;
}
