using System.Collections.Concurrent;
using System.Net;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Http.Connections;
using Microsoft.AspNetCore.SignalR;
using Microsoft.AspNetCore.SignalR.Client;
using Microsoft.Extensions.DependencyInjection;
using XGenMM.Gateway.Contracts;

namespace XGenMM.LoadTest.Clients;

/// <summary>
/// The SignalR hub <c>/hubs/chat</c> over WebSockets with the official .NET client. Each simulated user holds its own
/// connection for the length of a request (a pool per tenant, one stream per connection at a time), as a browser tab
/// would; connections are opened ahead of a closed-loop point so that the handshake is not counted in TTFT.
/// </summary>
public sealed partial class HubStreamClient(Uri baseAddress, bool messagePack) : ITurnClient
{
    private readonly ConcurrentDictionary<string, ConcurrentBag<HubConnection>> _idle = new();
    private readonly ConcurrentBag<HubConnection> _all = [];

    public string Protocol => messagePack ? "signalr-messagepack" : "signalr-json";

    public async Task PrepareAsync(IReadOnlyList<TenantSpec> tenants, int concurrency, CancellationToken cancellationToken)
    {
        foreach (var tenant in tenants.Where(t => t.Share > 0 && t.ServerId is not null))
        {
            var bag = Idle(tenant);
            int missing = concurrency - bag.Count;
            if (missing <= 0) continue;
            var opened = await Task.WhenAll(Enumerable.Range(0, missing).Select(async _ =>
            {
                try
                {
                    return await ConnectAsync(tenant, cancellationToken).ConfigureAwait(false);
                }
                catch (HttpRequestException)
                {
                    return null;
                }
            })).ConfigureAwait(false);
            foreach (var c in opened) if (c is not null) bag.Add(c);
        }
    }

    public async Task SendAsync(TurnRequest request, RequestRecord record, RunClock clock, CancellationToken cancellationToken)
    {
        HubConnection? connection = null;
        try
        {
            connection = await AcquireAsync(request.Tenant, cancellationToken).ConfigureAwait(false);
            var turn = new HubTurn
            {
                ConversationId = request.ConversationId,
                Messages = [.. request.Messages.Select(m => new HubMessage { Role = m.Role, Content = m.Text, Images = m.Images.Count == 0 ? null : [.. m.Images] })],
                MaxTokens = request.MaxTokens,
                Temperature = request.Temperature,
                Seed = request.Seed,
                IgnoreEos = request.IgnoreEos,
            };
            var answer = new StringBuilder();
            double last = 0;
            HubDelta? final = null;
            await foreach (var delta in connection.StreamAsync<HubDelta>("Chat", turn, cancellationToken).ConfigureAwait(false))
            {
                double now = clock.Now;
                if (!string.IsNullOrEmpty(delta.Text))
                {
                    if (record.Ttft is null) record.Ttft = now - record.Start;
                    else record.Itl.Add(now - last);
                    last = now;
                    record.Chunks++;
                    answer.Append(delta.Text);
                }
                if (delta.FinishReason is not null) final = delta;
            }
            record.End = clock.Now;
            record.Answer = answer.ToString();
            if (final is null)
            {
                record.Fail(null, "stream truncated", "The hub stream ended without a final delta.");
                return;
            }
            record.FinishReason = final.FinishReason;
            if (final.Usage is { } usage)
            {
                record.PromptTokens = usage.PromptTokens;
                record.ImageTokens = usage.ImageTokens;
                record.CachedTokens = usage.CachedTokens;
                record.OutputTokens = usage.CompletionTokens;
            }
            if (record.OutputTokens == 0) record.OutputTokens = record.Chunks;
            record.Success = true;
        }
        catch (HubException e)
        {
            record.End = clock.Now;
            var (status, code) = ParseHubError(e.Message);
            record.Fail(status, status is null ? "hub " + code : $"{status} {code}", e.Message);
            record.RetryAfterSeconds = ParseHubRetryAfter(e.Message);
        }
        catch (HttpRequestException e)
        {
            record.End = clock.Now;
            int? status = e.StatusCode is HttpStatusCode s ? (int)s : null;
            record.Fail(status, status is null ? "transport connect" : $"{status} connect", e.Message);
        }
        catch (Exception e) when (e is IOException or InvalidOperationException or System.Net.WebSockets.WebSocketException && !cancellationToken.IsCancellationRequested)
        {
            record.End = clock.Now;
            record.Fail(null, "transport " + e.GetType().Name, e.Message);
            if (connection is not null) { await connection.DisposeAsync().ConfigureAwait(false); connection = null; }
        }
        finally
        {
            if (connection is not null)
            {
                if (connection.State == HubConnectionState.Connected && !cancellationToken.IsCancellationRequested) Idle(request.Tenant).Add(connection);
                else await connection.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    /// <summary>The hub's error text "STATUS code: message" (the server may prefix it with its own words).</summary>
    internal static (int? Status, string Code) ParseHubError(string message)
    {
        var m = HubError().Match(message);
        return m.Success ? (int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture), m.Groups[2].Value) : (null, "error");
    }

    /// <summary>The seconds of a hub error's last line "Retry-After: SECONDS" (the gateway's refusals that say when to
    /// come back), or null.</summary>
    internal static double? ParseHubRetryAfter(string message)
    {
        var m = HubRetryAfter().Match(message);
        return m.Success ? double.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) : null;
    }

    [GeneratedRegex(@"\nRetry-After: ([0-9]{1,9})\s*$")]
    private static partial Regex HubRetryAfter();

    [GeneratedRegex(@"(?<![0-9])([1-5][0-9]{2}) ([A-Za-z0-9_]+):")]
    private static partial Regex HubError();

    private ConcurrentBag<HubConnection> Idle(TenantSpec tenant) => _idle.GetOrAdd(tenant.ApiKey, _ => []);

    private async Task<HubConnection> AcquireAsync(TenantSpec tenant, CancellationToken cancellationToken)
    {
        var bag = Idle(tenant);
        while (bag.TryTake(out var c))
        {
            if (c.State == HubConnectionState.Connected) return c;
            await c.DisposeAsync().ConfigureAwait(false);
        }
        return await ConnectAsync(tenant, cancellationToken).ConfigureAwait(false);
    }

    private async Task<HubConnection> ConnectAsync(TenantSpec tenant, CancellationToken cancellationToken)
    {
        var builder = new HubConnectionBuilder().WithUrl(new Uri(baseAddress, "hubs/chat"), o =>
        {
            o.AccessTokenProvider = () => Task.FromResult<string?>(tenant.ApiKey);
            o.Transports = HttpTransportType.WebSockets;
        });
        if (messagePack) builder.AddMessagePackProtocol();
        var connection = builder.Build();
        connection.ServerTimeout = TimeSpan.FromMinutes(5);
        try
        {
            await connection.StartAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        _all.Add(connection);
        return connection;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var c in _all) await c.DisposeAsync().ConfigureAwait(false);
        _all.Clear();
        _idle.Clear();
    }
}
