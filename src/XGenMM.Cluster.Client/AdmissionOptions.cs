namespace XGenMM.Cluster.Client;

/// <summary>Admission control at the router. Bound from <c>Cluster:Admission</c>.</summary>
public sealed class AdmissionOptions
{
    /// <summary>The time-to-first-token objective of the queue: a new request is refused at the door when on every
    /// decoder its predicted wait for a first token (<see cref="CapacityModel"/>), not counting its own prompt's prefill,
    /// is above this. 0 turns admission control off. The request's own prefill is what it would take on an idle decoder:
    /// refusing others cannot shorten it, so a long prompt (an image's 600+ positions) is not refused for its length
    /// (<see cref="CountOwnPrefill"/> counts it). The default, 0.05 s, is what held the admitted TTFT p99 within 2x of
    /// the knee's at 3x and 10x the knee in three paired rounds on the 2-core CPU with xgenmm-nano, where 0.06 s did
    /// in one of three (loadtest/results/2026-12-06-overload-wait);
    /// admitted requests wait about the target at the median and about twice it at p99. Raise it for slower decoders
    /// (a decode step near or above the target admits little beside the rows running) or a looser objective.</summary>
    public double TtftTargetSeconds { get; set; } = 0.05;

    /// <summary>Whether the target bounds the whole predicted TTFT, the request's own prefill included (a TTFT
    /// objective per request rather than per queue): long prompts are then refused on a busy decoder for their length.</summary>
    public bool CountOwnPrefill { get; set; }

    /// <summary>Upper bound of the Retry-After given with a refusal, however long the predicted wait: a client that
    /// waits longer than this would only come back to a queue that changed anyway.</summary>
    public double MaxRetryAfterSeconds { get; set; } = 30;

    /// <summary>The predicted seconds compared with <see cref="TtftTargetSeconds"/>.</summary>
    public double Measure(TtftPrediction prediction) => CountOwnPrefill ? prediction.Seconds : prediction.WaitSeconds;

    /// <summary>What <see cref="Measure"/> is, in words for a refusal's message.</summary>
    public string MeasureName => CountOwnPrefill ? "time to first token" : "wait for a first token (this request's own prefill not counted)";
}
