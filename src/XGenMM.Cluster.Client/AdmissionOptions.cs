namespace XGenMM.Cluster.Client;

/// <summary>Admission control at the router. Bound from <c>Cluster:Admission</c>.</summary>
public sealed class AdmissionOptions
{
    /// <summary>The time-to-first-token objective: a new request is refused at the door when every decoder's
    /// predicted TTFT for it (<see cref="CapacityModel"/>) is above this. 0 turns admission control off. The default,
    /// 0.15 s, is what held the admitted TTFT p99 near 2x the knee's on the 2-core CPU with xgenmm-nano while keeping
    /// most of the knee's goodput, once the model predicted the TTFT that came (loadtest/results/2026-12-05-overload-calibrated);
    /// the earlier 2 s admitted work that waited 7.8x the knee's p99. Raise it for longer prompts or slower models.</summary>
    public double TtftTargetSeconds { get; set; } = 0.15;

    /// <summary>Upper bound of the Retry-After given with a refusal, however long the predicted wait: a client that
    /// waits longer than this would only come back to a queue that changed anyway.</summary>
    public double MaxRetryAfterSeconds { get; set; } = 30;
}
