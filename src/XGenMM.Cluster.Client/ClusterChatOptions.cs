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
    /// <summary>Deadlines of the calls on a request's path (bound from <c>Cluster:Deadlines</c>).</summary>
    public CallDeadlines Deadlines { get; set; } = new();
}

/// <summary>Deadlines of the calls on a request's path. Bound from <c>Cluster:Deadlines</c>. Every call the gateway
/// makes into the cluster has one, so that no request waits on a silo that died (whose calls nobody answers until the
/// Orleans response timeout) or on a store that is down.</summary>
public sealed class CallDeadlines
{
    /// <summary>Gateway to tenant grain (admission): the tenant's state is written to the membership store with every
    /// admission, so this is also how long a request waits before a 503 while that store is unreachable.</summary>
    public TimeSpan Tenant { get; set; } = TimeSpan.FromSeconds(3);
    /// <summary>Gateway to vision grain, all attempts of one image together (a vision silo's death ends an attempt at
    /// once and the image is encoded again on another vision silo).</summary>
    public TimeSpan Encode { get; set; } = TimeSpan.FromSeconds(30);
    /// <summary>Gateway to the decoder registry.</summary>
    public TimeSpan Registry { get; set; } = TimeSpan.FromSeconds(2);
    /// <summary>How long a decoder list read earlier may still be routed on when the registry cannot be read.</summary>
    public TimeSpan RegistryMaxAge { get; set; } = TimeSpan.FromSeconds(5);
    /// <summary>How often the gateway reads the cluster's active silos (<see cref="ClusterWatch"/>): a dead silo's calls
    /// end within this of the cluster declaring it dead.</summary>
    public TimeSpan ViewPoll { get; set; } = TimeSpan.FromSeconds(1);
    /// <summary>Deadline of one read of the cluster's active silos.</summary>
    public TimeSpan View { get; set; } = TimeSpan.FromSeconds(2);
    /// <summary>Disposing a token stream sends one message to the decoder; a dead decoder never answers it.</summary>
    public TimeSpan StreamDispose { get; set; } = TimeSpan.FromSeconds(2);
}
