using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http.Connections;
using Microsoft.AspNetCore.SignalR.Client;
using Microsoft.Extensions.Logging;
using XGenMM.Gateway.Hubs;

namespace XGenMM.Gateway.Tests;

/// <summary>The gateway logging everything at Trace into <see cref="Lines"/>, with OpenTelemetry tracing on, and a tenant whose key is unique to it.</summary>
public sealed class TraceLoggingGatewayFixture : GatewayFixture, ILoggerProvider, ISupportExternalScope
{
    public static readonly string Key = "sk-secret-" + Guid.NewGuid().ToString("N");

    private IExternalScopeProvider? _scopes;

    public ConcurrentQueue<string> Lines { get; } = new();

    protected override void Configure(Dictionary<string, string?> settings)
    {
        settings["Logging:LogLevel:Default"] = "Trace";
        // Every category the hosts' appsettings.json quiets, back to Trace: a key must not leak at any level.
        foreach (var category in new[] { "Microsoft", "Microsoft.AspNetCore", "Microsoft.Hosting.Lifetime", "Microsoft.Extensions.Http", "System.Net.Http",
                     "Orleans", "Orleans.Runtime.Watchdog", "Polly", "XGenMM", "XGenMM.Gateway.Tenants.ApiKeyAuthenticationHandler" })
            settings[$"Logging:LogLevel:{category}"] = "Trace";
        // Tracing is on only with an exporter; nothing listens there, the spans are read by the test's ActivityListener.
        settings["Telemetry:OtlpEndpoint"] = "http://127.0.0.1:9";
        AddTenant(settings, 9, "secretive", Key, rpm: 10_000, concurrent: 64, images: 8);
    }

    protected override void ConfigureBuilder(WebApplicationBuilder builder)
    {
        builder.Logging.ClearProviders();
        builder.Logging.SetMinimumLevel(LogLevel.Trace);
        builder.Logging.AddProvider(this);
    }

    public ILogger CreateLogger(string categoryName) => new Capture(this, categoryName);

    public void SetScopeProvider(IExternalScopeProvider scopeProvider) => _scopes = scopeProvider;

    void IDisposable.Dispose() { }

    private sealed class Capture(TraceLoggingGatewayFixture owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => owner._scopes?.Push(state);

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            // Everything a provider could write: the message, each structured value, the exception and the scopes.
            var line = new StringBuilder($"{logLevel} {category}[{eventId.Id}] {formatter(state, exception)}");
            if (state is IEnumerable<KeyValuePair<string, object?>> values)
                foreach (var v in values) line.Append(" | ").Append(v.Key).Append('=').Append(v.Value);
            if (exception is not null) line.Append(" | ").Append(exception);
            owner._scopes?.ForEachScope((scope, sb) =>
            {
                sb.Append(" | scope ").Append(scope);
                if (scope is IEnumerable<KeyValuePair<string, object?>> kv) foreach (var v in kv) sb.Append(' ').Append(v.Key).Append('=').Append(v.Value);
            }, line);
            owner.Lines.Enqueue(line.ToString());
        }
    }
}

/// <summary>
/// No API key in any log line or span: the key goes as <c>?access_token=</c> (the browser's SignalR path: negotiate,
/// WebSocket, long polling) and on /v1 as a query parameter, with logging at Trace and tracing on.
/// </summary>
public sealed class SecretLoggingTests(TraceLoggingGatewayFixture gateway) : IClassFixture<TraceLoggingGatewayFixture>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact(Timeout = 120_000)]
    public async Task The_api_key_appears_in_no_log_line_and_no_span_attribute()
    {
        string key = TraceLoggingGatewayFixture.Key;
        var spans = new ConcurrentQueue<string>();
        using var listener = new ActivityListener
        {
            ShouldListenTo = _ => true,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = a => spans.Enqueue($"{a.Source.Name} {a.OperationName} {a.DisplayName} " +
                string.Join(' ', a.TagObjects.Select(t => $"{t.Key}={t.Value}")) + " " + string.Join(' ', a.Baggage.Select(b => $"{b.Key}={b.Value}"))),
        };
        ActivitySource.AddActivityListener(listener);

        // As the browser client does: the key in the URL of negotiate and of every transport request.
        foreach (var transport in new[] { HttpTransportType.WebSockets, HttpTransportType.LongPolling, HttpTransportType.ServerSentEvents })
        {
            await using var connection = new HubConnectionBuilder()
                .WithUrl(new Uri(gateway.BaseAddress, "/hubs/chat?access_token=" + key), o => o.Transports = transport)
                .Build();
            await connection.StartAsync(Ct);
            var turn = new HubTurn { Messages = [new HubMessage { Role = "user", Content = "hi" }], MaxTokens = 2, Temperature = 0 };
            await foreach (var _ in connection.StreamAsync<HubDelta>("Chat", turn, Ct)) { }
        }
        using var http = new HttpClient { BaseAddress = gateway.BaseAddress };
        using (var refused = await http.GetAsync($"/v1/models?access_token={key}", Ct))
            Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
        using (var request = new HttpRequestMessage(HttpMethod.Get, $"/v1/models?access_token={key}&api_key={key}&x=1"))
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
            using var ok = await http.SendAsync(request, Ct);
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        }
        using (var wrong = await http.GetAsync($"/hubs/chat/negotiate?access_token={key}x", Ct)) { }
        await Task.Delay(500, Ct); // request-finished lines and span ends land after the response

        var leaks = gateway.Lines.Where(l => l.Contains(key, StringComparison.Ordinal)).Concat(spans.Where(s => s.Contains(key, StringComparison.Ordinal))).ToList();
        Assert.True(leaks.Count == 0, $"{leaks.Count} line(s) with the key:\n" + string.Join('\n', leaks.Take(20)));
        // Not vacuous: the request lines were logged and the spans recorded, with the parameter's value redacted.
        Assert.Contains(gateway.Lines, l => l.Contains("/hubs/chat/negotiate", StringComparison.Ordinal) && l.Contains("access_token=[redacted]", StringComparison.Ordinal));
        Assert.Contains(gateway.Lines, l => l.Contains("/v1/models", StringComparison.Ordinal) && l.Contains("api_key=[redacted]", StringComparison.Ordinal));
        Assert.Contains(spans, s => s.Contains("url.query=", StringComparison.Ordinal) && s.Contains("access_token=", StringComparison.Ordinal));
    }
}

/// <summary>Refusals that shed load (429, 503) are counted in metrics and logged at Debug only; a refusal of bad input
/// stays at Information. A flood of shed requests wrote two Information lines each (640 lines a second in the overload
/// sweep) on the cores the admitted requests need.</summary>
public sealed class ShedLoggingTests(TraceLoggingGatewayFixture gateway) : IClassFixture<TraceLoggingGatewayFixture>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private StringContent Body(string text, int maxTokens) => new(
        $$"""{"model":"{{gateway.ModelId}}","messages":[{"role":"user","content":"{{text}}"}],"max_tokens":{{maxTokens}}}""", Encoding.UTF8, "application/json");

    [Fact(Timeout = 120_000)]
    public async Task A_shed_request_is_logged_at_debug_and_a_bad_one_at_information()
    {
        // The "tight" tenant may send 2 requests a minute: the third is shed with 429.
        using var http = gateway.Client(GatewayFixture.TightKey);
        var statuses = new List<HttpStatusCode>();
        for (int i = 0; i < 3; i++)
        {
            using var response = await http.PostAsync("/v1/chat/completions", Body($"Shed {i}", 2), Ct);
            statuses.Add(response.StatusCode);
        }
        Assert.Equal([HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.TooManyRequests], statuses);
        // A prompt over the gateway's MaxPromptTokens (1500): refused with 400 after the request was parsed.
        using (var bad = await http.PostAsync("/v1/chat/completions", Body(string.Concat(Enumerable.Repeat("word ", 4000)), 2), Ct))
            Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);

        var refusals = gateway.Lines.Where(l => l.Contains("Tenant tight:", StringComparison.Ordinal)).ToList();
        Assert.Contains(refusals, l => l.StartsWith("Debug XGenMM.Gateway.Chat.ChatService[704]", StringComparison.Ordinal) && l.Contains(" 429 ", StringComparison.Ordinal));
        Assert.DoesNotContain(refusals, l => l.StartsWith("Information", StringComparison.Ordinal) && l.Contains(" 429 ", StringComparison.Ordinal));
        Assert.Contains(refusals, l => l.StartsWith("Information XGenMM.Gateway.Chat.ChatService[701]", StringComparison.Ordinal) && l.Contains(" 400 ", StringComparison.Ordinal));
    }
}
