namespace XGenMM.Cluster.Abstractions;

/// <summary>
/// One image of one tenant scope, keyed by its content key (hex SHA-256 of scope, model fingerprint and bytes, computed
/// once by the gateway): lives on a vision silo; identical images in flight share the activation and one encode; the
/// decoder pulls the tokens from it directly.
/// </summary>
public interface IVisionGrain : IGrainWithStringKey
{
    /// <summary>Encodes the image (or finds it cached) and returns where its tokens are.</summary>
    /// <remarks>The caller's token bounds the call (a gateway gives up when a vision silo leaves the cluster, since a
    /// call to a grain whose silo died is answered by nobody until the response timeout).</remarks>
    [ResponseTimeout("00:02:00")]
    Task<ImageRef> Encode([Immutable] byte[] image, CancellationToken cancellationToken = default);

    /// <summary>The tokens; throws <see cref="ClusterRejectedException"/> (VisionTokensMissing) if they are gone.</summary>
    Task<VisionTokensPayload> GetTokens(CancellationToken cancellationToken = default);
}

/// <summary>
/// The decode engine of one device, keyed "{silo}|{device}" and pinned to that silo: streams generations.
/// </summary>
public interface IDecoderGrain : IGrainWithStringKey
{
    [ResponseTimeout("00:05:00")]
    IAsyncEnumerable<GenerationChunk> Generate(GenerationRequest request, CancellationToken cancellationToken = default);

    Task<DecoderLoadReport> GetLoad();
}

/// <summary>A decoder's load as routers see it, with what admission control needs to predict a new request's wait
/// (CapacityModel in XGenMM.Cluster.Client).</summary>
[GenerateSerializer, Immutable, Alias("xgenmm.DecoderLoadReport")]
public sealed record DecoderLoadReport
{
    [Id(0)] public required string DecoderKey { get; init; }
    [Id(1)] public required string Silo { get; init; }
    [Id(2)] public int Waiting { get; init; }
    [Id(3)] public int Running { get; init; }
    [Id(4)] public long WaitingTokens { get; init; }
    [Id(5)] public double KvUsage { get; init; }
    [Id(6)] public int TotalSlots { get; init; }
    [Id(7)] public int ContextLength { get; init; }
    [Id(8)] public double TokensPerSecond { get; init; }
    [Id(9)] public bool Draining { get; init; }
    [Id(10)] public DateTimeOffset At { get; init; }
    /// <summary>Seconds of one decode step at the recent batch (moving average; 0 = not measured yet).</summary>
    [Id(11)] public double DecodeStepSeconds { get; init; }
    /// <summary>Prefill seconds per prompt position (moving average; 0 = not measured yet).</summary>
    [Id(12)] public double PrefillSecondsPerToken { get; init; }
    /// <summary>Prompt positions prefilled per engine step at most.</summary>
    [Id(13)] public int PrefillChunkTokens { get; init; }
    /// <summary>Prompt positions of admitted requests not prefilled yet.</summary>
    [Id(14)] public long PrefillingTokens { get; init; }
    /// <summary>Tokens each running request may still generate, ascending (when the slots free at the latest).</summary>
    [Id(15)] public int[] RemainingTokens { get; init; } = [];
    /// <summary>Every tenant with a request on this decoder (slot holders, waiting, weight): the router's
    /// tenant-share admission reads each tenant's weighted share of the slots from it.</summary>
    [Id(16)] public TenantRowsReport[] Tenants { get; init; } = [];
    /// <summary>Fixed seconds of one forward pass whatever it carries (fitted; 0 = not fitted yet): a pass takes this +
    /// its decode rows x <see cref="StepSecondsPerRow"/> + its prompt positions x <see cref="StepSecondsPerPrefillToken"/>.</summary>
    [Id(17)] public double StepFixedSeconds { get; init; }
    /// <summary>Seconds per decode row of one forward pass (fitted; 0 = not fitted yet).</summary>
    [Id(18)] public double StepSecondsPerRow { get; init; }
    /// <summary>Fraction of recent admissions' prompt positions reused from a parked prefix, not prefilled (moving
    /// average): the prompts not admitted yet are expected to prefill the rest only.</summary>
    [Id(19)] public double PrefixReuseFraction { get; init; }
    /// <summary>Rows the tenants over their share may run now (the engine's shared step limit; 0 or
    /// <see cref="TotalSlots"/> when none applies): their new requests wait for one of their rows to end.</summary>
    [Id(20)] public int RowLimit { get; init; }
    /// <summary>Seconds per prompt position of one forward pass beyond its decode rows (fitted; 0 = not fitted yet).</summary>
    [Id(21)] public double StepSecondsPerPrefillToken { get; init; }
}

/// <summary>One tenant's requests on a decoder: <paramref name="Running"/> hold a slot, <paramref name="Waiting"/> wait
/// for one; <paramref name="Weight"/> is its weight in the decoder's fair shares; <paramref name="Held"/>: the engine
/// holds it to the row limit that protects a lighter tenant (its excess waits there).</summary>
[GenerateSerializer, Immutable, Alias("xgenmm.TenantRowsReport")]
public sealed record TenantRowsReport(string Tenant, int Running, int Waiting, double Weight, bool Held = false);

/// <summary>The cluster-wide list of decoders and their latest load (key 0). Decoder silos report every second.</summary>
public interface IDecoderRegistryGrain : IGrainWithIntegerKey
{
    Task Report(DecoderLoadReport report);
    Task Remove(string decoderKey);
    /// <summary>Decoders that reported recently and are not draining.</summary>
    Task<DecoderLoadReport[]> List(CancellationToken cancellationToken = default);
}

/// <summary>A tenant's limits.</summary>
[GenerateSerializer, Immutable, Alias("xgenmm.TenantLimits")]
public sealed record TenantLimits(int RequestsPerMinute = 600, long TokensPerMinute = 1_000_000, int ConcurrentStreams = 32, int MaxImagesPerRequest = 8);

public enum QuotaRejection
{
    RequestsPerMinute = 0,
    TokensPerMinute = 1,
    ConcurrentStreams = 2,
    TooManyImages = 3,
}

/// <summary>The tenant grain's answer to a request for quota.</summary>
[GenerateSerializer, Immutable, Alias("xgenmm.AdmissionTicket")]
public sealed record AdmissionTicket(bool Admitted, string? LeaseId, QuotaRejection? Rejection = null, double RetryAfterSeconds = 0, string? Message = null);

/// <summary>One day of a tenant's usage ledger (UTC).</summary>
[GenerateSerializer, Immutable, Alias("xgenmm.TenantUsageDay")]
public sealed record TenantUsageDay(DateOnly Day, long Requests, long PromptTokens, long CompletionTokens, long ImageTokens);

/// <summary>The single cluster-wide authority for a tenant's limits and usage (key: tenant id). Persisted.</summary>
public interface ITenantGrain : IGrainWithStringKey
{
    Task SetLimits(TenantLimits limits);
    Task<TenantLimits> GetLimits();

    /// <summary>Checks and takes quota for one request: a concurrent-stream lease, one request of the per-minute
    /// count, and <paramref name="estimatedTokens"/> of the per-minute token budget.</summary>
    /// <remarks>A caller that gives up (its deadline passed, e.g. while the tenant storage is unreachable) cancels the
    /// token; a ticket taken after that is returned at once, so that no lease is held by nobody.</remarks>
    Task<AdmissionTicket> Admit(int images, long estimatedTokens, CancellationToken cancellationToken = default);

    /// <summary>Returns the lease and records what the request really used (the token budget is corrected).</summary>
    Task Complete(string leaseId, long estimatedTokens, UsageReport usage);

    Task<TenantUsageDay[]> GetUsage(int days);
}

/// <summary>One active silo of the cluster as membership sees it.</summary>
[GenerateSerializer, Immutable, Alias("xgenmm.SiloView")]
public sealed record SiloView(string Address, string Name, string[] Roles);

/// <summary>The silos of the cluster that still serve (active, or draining after SIGTERM) as one silo's membership sees them (the version grows with every change).</summary>
[GenerateSerializer, Immutable, Alias("xgenmm.ClusterView")]
public sealed record ClusterView(long Version, SiloView[] Silos);

/// <summary>
/// Membership as the silos see it, for clients (which have no membership service of their own): a stateless worker on
/// whichever silo takes the call. Gateways poll it to notice a silo's death within one poll of the cluster deciding it,
/// and end the calls that silo will never answer.
/// </summary>
public interface IClusterViewGrain : IGrainWithIntegerKey
{
    Task<ClusterView> Read(CancellationToken cancellationToken = default);
}
