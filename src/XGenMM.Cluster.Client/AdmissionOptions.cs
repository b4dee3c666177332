namespace XGenMM.Cluster.Client;

/// <summary>Admission control at the router. Bound from <c>Cluster:Admission</c>.</summary>
public sealed class AdmissionOptions
{
    /// <summary>The time-to-first-token objective: a new request is refused at the door when every decoder's
    /// predicted TTFT for it (<see cref="CapacityModel"/>) is above this. 0 turns admission control off.</summary>
    public double TtftTargetSeconds { get; set; } = 2;

    /// <summary>Upper bound of the Retry-After given with a refusal, however long the predicted wait: a client that
    /// waits longer than this would only come back to a queue that changed anyway.</summary>
    public double MaxRetryAfterSeconds { get; set; } = 30;
}
