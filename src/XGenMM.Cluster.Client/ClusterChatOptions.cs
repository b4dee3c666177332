namespace XGenMM.Cluster.Client;

/// <summary>Routing and recovery settings. Bound from <c>Cluster:Routing</c>.</summary>
public sealed class ClusterChatOptions
{
    /// <summary>How long a fetched decoder list is trusted.</summary>
    public TimeSpan RegistryRefresh { get; set; } = TimeSpan.FromMilliseconds(500);
    /// <summary>Further decoders tried when one fails (before or during a stream).</summary>
    public int MaxRecoveryAttempts { get; set; } = 3;
    /// <summary>A conversation stays on its affine decoder while that decoder has at most this many prompt tokens queued.</summary>
    public long AffinityMaxWaitingTokens { get; set; } = 8192;
    /// <summary>How long to wait for a decoder to appear when none is registered (silos starting or failing over).</summary>
    public TimeSpan NoDecoderWait { get; set; } = TimeSpan.FromSeconds(10);
    /// <summary>Items the decoder may batch into one message of the token stream.</summary>
    public int StreamBatchSize { get; set; } = 16;
    /// <summary>Admission control (bound from <c>Cluster:Admission</c>, not <c>Cluster:Routing</c>).</summary>
    public AdmissionOptions Admission { get; set; } = new();
}
