using XGenMM.Cluster.Abstractions;

namespace XGenMM.Cluster.Client;

/// <summary>
/// A tenant's weighted share of one decoder's rows, from the decoder's load report (docs/architecture.md,
/// "Tenant isolation"). The share is the rows in use (at most the slots) times the tenant's weight over the weights of
/// every tenant there, this one included. Rows are slot holders and waiting requests, so a tenant that floods the queue is over its share
/// at once, not only once its requests hold slots.
/// <para>Used when the cluster is over its TTFT target: a tenant below its share while another tenant is there is
/// still admitted (alone, its own requests are the load, and over the target they are refused as over capacity), because the
/// decoder's scheduler serves a tenant below its share first (its wait is not the queue's); a tenant at or above it
/// is refused with 429 while another tenant is there, so that one tenant's burst is refused and never another's
/// requests.</para>
/// </summary>
public readonly record struct TenantShare(int Rows, double Slots, bool OthersPresent)
{
    /// <summary>Whether one more request of the tenant still fits within its share.</summary>
    public bool Below => Rows + 1 <= Slots;

    /// <param name="pressing">Whether a tenant was refused for its share lately (by this router); null: none was.
    /// While another tenant present is pressing and this one is not, this one's share is of every slot, not of the rows
    /// in use: the pressing tenant, refused at the door most of the time, may hold only a row or two, and a share of the
    /// few rows in use refused the light tenant's second stream (a 429 for a 2-stream tenant beside a 64-user burst).
    /// Both pressing (two tenants flooding) keeps the share of the rows in use, so that neither creeps past the target.</param>
    /// <param name="withinTarget">The TTFT target over the decoder's predicted TTFT (at most 1). A pressing tenant's
    /// share is of the rows in use scaled by it: of the rows the decoder could serve within the target, not of those it
    /// holds now. Of the rows in use alone, two flooding tenants each got a request in whenever it held a row fewer than
    /// the other, which kept the rows in use where they were when the target was first passed however slow the steps
    /// became since: at 10x offered load the admitted requests were predicted (and took) 0.2-0.46 s against a 0.15 s
    /// target.</param>
    public static TenantShare Of(DecoderLoadReport decoder, string tenant, Func<string, bool>? pressing = null, double withinTarget = 1)
    {
        ArgumentNullException.ThrowIfNull(decoder);
        int rows = 0;
        // The request being asked about counts as in use: a tenant with no row is never refused for its share.
        int inUse = 1;
        double weight = 1, others = 0;
        bool found = false, held = false, othersHeld = false, othersPressing = false;
        foreach (var t in decoder.Tenants)
        {
            if (t.Held && string.Equals(t.Tenant, tenant, StringComparison.Ordinal)) held = true;
            else if (t.Held) othersHeld = true;
            inUse += t.Running + t.Waiting;
            if (string.Equals(t.Tenant, tenant, StringComparison.Ordinal))
            {
                rows = t.Running + t.Waiting;
                weight = t.Weight;
                found = true;
            }
            else if (t.Running + t.Waiting > 0)
            {
                others += t.Weight;
                othersPressing |= pressing?.Invoke(t.Tenant) == true;
            }
        }
        // A tenant the decoder has not seen has the default weight there (DecodeEngineOptions.TenantWeights).
        if (!found) weight = 1;
        // The engine holds a heavy tenant to a row limit that protects a lighter one: the held tenant is over its share
        // whatever the counts, and the one it is held for is within it (a share of the few rows in use while the
        // heavy tenant is held made the light tenant look over its own: 429 for a tenant with 1 row).
        if (held) return new TenantShare(rows, 0, true);
        if (othersHeld) return new TenantShare(rows, Math.Max(0, decoder.TotalSlots), true);
        // The share is of the rows in use, not of every slot: this is asked only when the decoder is over its TTFT
        // target, so what it holds now is what it can serve within the target. A share of all the slots let every
        // tenant of a crowded decoder fill it far past the target (two tenants at 10x: TTFT p99 4.5x the knee's).
        // Of the slots, not of the engine's row limit (DecoderLoadReport.RowLimit): that limit holds back only the tenants
        // over their share, and a share of it made the light tenant it protects look over its own (429 for 2 streams).
        bool thisPressing = pressing?.Invoke(tenant) == true;
        double capacity = othersPressing && !thisPressing ? Math.Max(0, decoder.TotalSlots) : Math.Min(Math.Max(0, decoder.TotalSlots), inUse);
        if (thisPressing) capacity *= Math.Clamp(withinTarget, 0, 1);
        double slots = capacity * weight / (weight + others);
        return new TenantShare(rows, slots, others > 0);
    }
}
