namespace XGenMM.Engine.Decoding;

/// <summary>
/// Slots whose sequence has finished but whose KV is kept for a follow-up turn. Each holds the content ids of the
/// positions in its KV (text token ids; vision positions as ids derived from the image's content key), so a new
/// prompt can take over the slot that shares its longest prefix. Least recently parked slots are evicted first.
/// </summary>
internal sealed class PrefixIndex
{
    private readonly LinkedList<(int Slot, long[] Ids)> _parked = new();

    public int Count => _parked.Count;

    public void Park(int slot, long[] ids) => _parked.AddLast((slot, ids));

    /// <summary>Takes the parked slot with the longest common prefix with <paramref name="ids"/>, if it reaches
    /// <paramref name="minimum"/>; returns the slot and the length of the common prefix. Of equally long matches the
    /// lowest slot: every chat prompt shares the template's opening, so after a burst many parked slots match a new
    /// prompt equally, and the one parked longest ago sat anywhere, widening every decode pass up to it.</summary>
    public (int Slot, int Common)? TakeBestMatch(ReadOnlySpan<long> ids, int minimum)
    {
        LinkedListNode<(int Slot, long[] Ids)>? best = null;
        int bestLength = 0;
        for (var node = _parked.First; node is not null; node = node.Next)
        {
            int common = ids.CommonPrefixLength(node.Value.Ids);
            if (common > bestLength || (common == bestLength && best is not null && node.Value.Slot < best.Value.Slot)) { best = node; bestLength = common; }
        }
        if (best is null || bestLength < minimum) return null;
        _parked.Remove(best);
        return (best.Value.Slot, bestLength);
    }

    /// <summary>The parked slot with the lowest index, if any.</summary>
    public int? LowestSlot
    {
        get
        {
            int? lowest = null;
            foreach (var (slot, _) in _parked) if (lowest is null || slot < lowest) lowest = slot;
            return lowest;
        }
    }

    /// <summary>Records that the KV of parked slot <paramref name="from"/> now lives in <paramref name="to"/> (same
    /// recency); returns how many positions it holds.</summary>
    public int Move(int from, int to)
    {
        for (var node = _parked.First; node is not null; node = node.Next)
        {
            if (node.Value.Slot != from) continue;
            node.Value = (to, node.Value.Ids);
            return node.Value.Ids.Length;
        }
        throw new InvalidOperationException($"Slot {from} is not parked.");
    }

    /// <summary>Evicts the least recently parked slot.</summary>
    public int? Evict()
    {
        var first = _parked.First;
        if (first is null) return null;
        _parked.RemoveFirst();
        return first.Value.Slot;
    }

    /// <summary>Content id of vision position <paramref name="index"/> of the image with <paramref name="contentKey"/>:
    /// negative, so it never equals a text token id; FNV-1a so it is stable across processes.</summary>
    public static long VisionId(string contentKey, int index)
    {
        ulong h = 14695981039346656037UL;
        foreach (char c in contentKey) { h ^= c; h *= 1099511628211UL; }
        h ^= (ulong)index * 0x9E3779B97F4A7C15UL;
        h *= 1099511628211UL;
        return -(long)(h >> 2) - 1;
    }
}
