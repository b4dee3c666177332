namespace XGenMM.Engine.Vision;

/// <summary>Least-recently-used map from content key to vision tokens, bounded by the bytes it holds. Not thread-safe.</summary>
internal sealed class VisionTokenCache(long capacityBytes)
{
    private readonly Dictionary<string, LinkedListNode<VisionTokens>> _map = new(StringComparer.Ordinal);
    private readonly LinkedList<VisionTokens> _order = new();

    public long Bytes { get; private set; }
    public int Count => _map.Count;

    public bool TryGet(string key, out VisionTokens tokens)
    {
        if (_map.TryGetValue(key, out var node))
        {
            _order.Remove(node);
            _order.AddLast(node);
            tokens = node.Value;
            return true;
        }
        tokens = null!;
        return false;
    }

    public void Add(VisionTokens tokens)
    {
        long size = tokens.Data.LongLength;
        if (size > capacityBytes || _map.ContainsKey(tokens.ContentKey)) return;
        while (Bytes + size > capacityBytes && _order.First is { } oldest)
        {
            _order.RemoveFirst();
            _map.Remove(oldest.Value.ContentKey);
            Bytes -= oldest.Value.Data.LongLength;
        }
        _map[tokens.ContentKey] = _order.AddLast(tokens);
        Bytes += size;
    }
}
