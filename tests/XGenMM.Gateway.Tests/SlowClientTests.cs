using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace XGenMM.Gateway.Tests;

/// <summary>The gateway with a 2 s header deadline, so a slowloris client is cut off within the test's time.</summary>
public sealed class SlowClientGatewayFixture : GatewayFixture
{
    public const int HeaderSeconds = 2;

    protected override void Configure(Dictionary<string, string?> settings) =>
        settings["Gateway:Limits:RequestHeadersTimeoutSeconds"] = HeaderSeconds.ToString(CultureInfo.InvariantCulture);
}

/// <summary>
/// Clients that hold connections open by sending slowly: headers a line at a time (slowloris) and a body a byte at a
/// time. Each is cut off within its limit while many of them are open, and other clients are served meanwhile.
/// </summary>
public sealed class SlowClientTests(SlowClientGatewayFixture gateway) : IClassFixture<SlowClientGatewayFixture>
{
    private const int Attackers = 16;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact(Timeout = 60_000)]
    public async Task Dribbled_headers_are_cut_off_at_the_header_deadline_and_others_are_served_meanwhile()
    {
        var clock = Stopwatch.StartNew();
        var attacks = Enumerable.Range(0, Attackers).Select(i => DribbleAsync(
            $"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {GatewayFixture.AlphaKey}\r\n",
            i => $"X-Slow-{i}: {new string('a', 8)}\r\n", TimeSpan.FromMilliseconds(300))).ToList();

        // While the attackers hold their connections, a normal request is answered.
        using (var http = gateway.Client(GatewayFixture.AlphaKey))
        using (var models = await http.GetAsync("/v1/models", Ct))
            Assert.Equal(HttpStatusCode.OK, models.StatusCode);

        var outcomes = await Task.WhenAll(attacks);
        foreach (var (closedAfter, response) in outcomes)
        {
            // Cut at the deadline (Kestrel checks it about once a second), never left open.
            Assert.InRange(closedAfter.TotalSeconds, SlowClientGatewayFixture.HeaderSeconds - 0.5, SlowClientGatewayFixture.HeaderSeconds + 8);
            Assert.True(response.Length == 0 || response.StartsWith("HTTP/1.1 408", StringComparison.Ordinal), response);
        }
        TestContext.Current.SendDiagnosticMessage(string.Create(CultureInfo.InvariantCulture,
            $"{Attackers} slowloris connections closed after {outcomes.Min(o => o.ClosedAfter.TotalSeconds):0.00}-{outcomes.Max(o => o.ClosedAfter.TotalSeconds):0.00} s (deadline {SlowClientGatewayFixture.HeaderSeconds} s); total {clock.Elapsed.TotalSeconds:0.0} s"));
        await AssertHealthyAsync();
    }

    [Fact(Timeout = 60_000)]
    public async Task A_body_sent_a_byte_at_a_time_is_cut_off_by_the_minimum_data_rate()
    {
        const int declared = 4096;
        var attacks = Enumerable.Range(0, 4).Select(_ => DribbleAsync(
            $"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {GatewayFixture.AlphaKey}\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n\r\n{{",
            _ => " ", TimeSpan.FromMilliseconds(250))).ToList();
        using (var http = gateway.Client(GatewayFixture.AlphaKey))
        using (var models = await http.GetAsync("/v1/models", Ct))
            Assert.Equal(HttpStatusCode.OK, models.StatusCode);
        foreach (var (closedAfter, response) in await Task.WhenAll(attacks))
        {
            // 4 bytes/s is under Kestrel's 240 bytes/s, enforced after its 5 s grace period.
            Assert.InRange(closedAfter.TotalSeconds, 4, 20);
            Assert.True(response.Length == 0 || response.StartsWith("HTTP/1.1 408", StringComparison.Ordinal)
                || response.StartsWith("HTTP/1.1 400", StringComparison.Ordinal), response);
        }
        await AssertHealthyAsync();
    }

    /// <summary>Sends <paramref name="start"/>, then one <paramref name="next"/> piece every <paramref name="every"/>
    /// until the server closes the connection; returns when it did and what it answered.</summary>
    private async Task<(TimeSpan ClosedAfter, string Response)> DribbleAsync(string start, Func<int, string> next, TimeSpan every)
    {
        using var client = new TcpClient();
        await client.ConnectAsync(gateway.BaseAddress.Host, gateway.BaseAddress.Port, Ct);
        var stream = client.GetStream();
        var clock = Stopwatch.StartNew();
        await stream.WriteAsync(Encoding.ASCII.GetBytes(start), Ct);
        var buffer = new byte[4096];
        var read = stream.ReadAsync(buffer, Ct).AsTask();
        for (int i = 0; clock.Elapsed < TimeSpan.FromSeconds(30); i++)
        {
            if (await Task.WhenAny(read, Task.Delay(every, Ct)) == read) break;
            try
            {
                await stream.WriteAsync(Encoding.ASCII.GetBytes(next(i)), Ct);
            }
            catch (IOException)
            {
                break; // the server closed the connection
            }
        }
        int n;
        try
        {
            n = await read.WaitAsync(TimeSpan.FromSeconds(5), Ct);
        }
        catch (IOException)
        {
            n = 0; // reset by the server
        }
        return (clock.Elapsed, Encoding.ASCII.GetString(buffer, 0, n));
    }

    private async Task AssertHealthyAsync()
    {
        using var http = gateway.Client();
        using var health = await http.GetAsync("/healthz", Ct);
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
    }
}
