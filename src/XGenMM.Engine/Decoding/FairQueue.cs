namespace XGenMM.Engine.Decoding;

/// <summary>
/// Weighted fair admission across tenants by tokens (start-time fair queueing): each tenant has a virtual time that
/// grows by the cost of what it was given divided by its weight; the waiting tenant with the smallest virtual time
/// goes next. A tenant that was idle joins at the current virtual clock, so idleness banks no credit and a tenant
/// flooding the queue only delays itself. Within a tenant, higher priority first, then arrival order.
/// </summary>
internal sealed class FairQueue<T>(Func<T, long> cost, Func<T, RequestPriority> priority, Func<string, double> weight) where T : class
{
    private sealed class TenantQueue(string name, double weight, IComparer<(T Item, int Priority, long Seq)> order)
    {
        public string Name { get; } = name;
        public double Weight { get; } = weight;
        public double VirtualTime { get; set; }
        public SortedSet<(T Item, int Priority, long Seq)> Items { get; } = new(order);
    }

    private static readonly IComparer<(T Item, int Priority, long Seq)> Order = Comparer<(T Item, int Priority, long Seq)>.Create(
        (a, b) => a.Priority != b.Priority ? b.Priority.CompareTo(a.Priority) : a.Seq.CompareTo(b.Seq));

    private readonly Dictionary<string, TenantQueue> _tenants = new(StringComparer.Ordinal);
    private readonly Dictionary<T, (string Tenant, (T, int, long) Entry)> _index = new(ReferenceEqualityComparer.Instance);
    private double _clock;
    private long _seq;

    public int Count => _index.Count;

    public void Enqueue(T item, string tenant)
    {
        if (!_tenants.TryGetValue(tenant, out var queue))
            _tenants[tenant] = queue = new TenantQueue(tenant, weight(tenant), Order);
        if (queue.Items.Count == 0) queue.VirtualTime = Math.Max(queue.VirtualTime, _clock);
        var entry = (item, (int)priority(item), _seq++);
        queue.Items.Add(entry);
        _index[item] = (tenant, entry);
    }

    /// <summary>The item that fair order admits next, without removing it.</summary>
    public T? Peek() => NextTenant(null)?.Items.Min.Item;

    /// <summary>Removes the next item and charges its tenant; only tenants <paramref name="eligible"/> accepts are
    /// considered while any of them waits.</summary>
    public T? Dequeue(Func<string, bool>? eligible = null) => Dequeue(eligible, fallback: true);

    /// <summary>As <see cref="Dequeue(Func{string, bool}?)"/>; without <paramref name="fallback"/>, null when no
    /// eligible tenant waits.</summary>
    public T? Dequeue(Func<string, bool>? eligible, bool fallback)
    {
        var queue = (eligible is null ? null : NextTenant(eligible)) ?? (fallback || eligible is null ? NextTenant(null) : null);
        if (queue is null) return null;
        var entry = queue.Items.Min;
        queue.Items.Remove(entry);
        _index.Remove(entry.Item);
        _clock = queue.VirtualTime;
        queue.VirtualTime += Math.Max(1, cost(entry.Item)) / queue.Weight;
        if (queue.Items.Count == 0 && _tenants.Count > 1024) _tenants.Remove(queue.Name);
        return entry.Item;
    }

    /// <summary>Removes an item without charging (cancelled or expired).</summary>
    public bool Remove(T item)
    {
        if (!_index.Remove(item, out var at)) return false;
        _tenants[at.Tenant].Items.Remove(at.Entry);
        return true;
    }

    public IEnumerable<T> Items => _index.Keys;

    /// <summary>Tenants with at least one waiting item.</summary>
    public IEnumerable<string> WaitingTenants => _tenants.Values.Where(q => q.Items.Count > 0).Select(q => q.Name);

    private TenantQueue? NextTenant(Func<string, bool>? eligible)
    {
        TenantQueue? best = null;
        foreach (var queue in _tenants.Values)
        {
            if (queue.Items.Count == 0 || (eligible is not null && !eligible(queue.Name))) continue;
            if (best is null || queue.VirtualTime < best.VirtualTime ||
                (queue.VirtualTime == best.VirtualTime && string.CompareOrdinal(queue.Name, best.Name) < 0))
                best = queue;
        }
        return best;
    }
}
