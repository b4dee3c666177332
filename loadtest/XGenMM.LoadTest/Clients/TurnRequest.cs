namespace XGenMM.LoadTest.Clients;

/// <summary>A tenant of the workload: a label for the report, its API key and its share of the requests.</summary>
public sealed record TenantSpec(string Label, string ApiKey, double Share)
{
    /// <summary>The tenant id the server reports for this key (from <c>GET /v1/usage</c>); null when the key is refused.</summary>
    public string? ServerId { get; set; }
}

/// <summary>One message of a conversation: text and, for user messages, encoded images (PNG bytes).</summary>
public sealed record MessageSpec(string Role, string Text, IReadOnlyList<byte[]> Images);

/// <summary>One request the load generator sends: the whole conversation so far, as the stateless APIs expect.</summary>
public sealed class TurnRequest
{
    public required TenantSpec Tenant { get; init; }
    public required string ConversationId { get; init; }
    /// <summary>0 for the opening turn of a conversation.</summary>
    public required int Turn { get; init; }
    public required IReadOnlyList<MessageSpec> Messages { get; init; }
    public required int MaxTokens { get; init; }
    public bool IgnoreEos { get; init; } = true;
    public float Temperature { get; init; }
    public long? Seed { get; init; }
    /// <summary>Words in the newest user message (the controlled input length).</summary>
    public int InputWords { get; init; }
    public int ImageCount => Messages.Sum(m => m.Images.Count);
}

/// <summary>
/// What happened to one request, as the client saw it. Times are seconds on the run's monotonic clock
/// (<see cref="System.Diagnostics.Stopwatch"/>), so that records of one point can be laid on one axis.
/// </summary>
public sealed class RequestRecord
{
    public required string Tenant { get; init; }
    public int Turn { get; init; }
    public int Images { get; init; }
    public int InputWords { get; init; }
    /// <summary>When an open loop meant to send it (equal to <see cref="Start"/> in a closed loop).</summary>
    public double Scheduled { get; set; }
    public double Start { get; set; }
    public double End { get; set; }
    /// <summary>Seconds from start to the first non-empty content chunk; null when none arrived.</summary>
    public double? Ttft { get; set; }
    /// <summary>Gaps between consecutive non-empty content chunks (vLLM's ITL, one per chunk after the first).</summary>
    public List<double> Itl { get; } = [];
    public int Chunks { get; set; }
    public int OutputTokens { get; set; }
    public int PromptTokens { get; set; }
    public int ImageTokens { get; set; }
    public int CachedTokens { get; set; }
    public string? FinishReason { get; set; }
    public bool Success { get; set; }
    /// <summary>HTTP status of a failure (hub errors carry one too); null for transport failures and timeouts.</summary>
    public int? Status { get; set; }
    /// <summary>The error's type, "STATUS code" (e.g. "401 invalid_api_key"), "timeout", "transport ...".</summary>
    public string? Error { get; set; }
    public string? ErrorMessage { get; set; }
    /// <summary>The refusal's Retry-After (HTTP 429/503), in seconds; null when the answer gave none.</summary>
    public double? RetryAfterSeconds { get; set; }
    /// <summary>The answer's text (kept for the next turn of the conversation).</summary>
    public string Answer { get; set; } = "";

    public double E2e => End - Start;

    /// <summary>Time per output token after the first: (e2e - ttft) / (tokens - 1); null below two tokens.</summary>
    public double? Tpot => Success && Ttft is double t && OutputTokens > 1 ? (E2e - t) / (OutputTokens - 1) : null;

    public void Fail(int? status, string error, string? message)
    {
        Success = false;
        Status = status;
        Error = error;
        ErrorMessage = message;
    }
}

/// <summary>A front door of the gateway: sends one turn and fills in its record while the answer streams.</summary>
public interface ITurnClient : IAsyncDisposable
{
    string Protocol { get; }

    /// <summary>Opens what the given concurrency will need (hub connections) so that the measurement does not pay for it.</summary>
    Task PrepareAsync(IReadOnlyList<TenantSpec> tenants, int concurrency, CancellationToken cancellationToken);

    /// <summary>
    /// Sends the turn with <see cref="RequestRecord.Start"/> already set; a server or transport failure is written to
    /// the record, cancellation (the driver's timeout or the end of the run) is thrown.
    /// </summary>
    Task SendAsync(TurnRequest request, RequestRecord record, RunClock clock, CancellationToken cancellationToken);
}

/// <summary>The run's monotonic clock in seconds.</summary>
public sealed class RunClock
{
    private readonly long _origin = System.Diagnostics.Stopwatch.GetTimestamp();

    public double Now => System.Diagnostics.Stopwatch.GetElapsedTime(_origin).TotalSeconds;
}
