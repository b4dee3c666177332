using System.Globalization;
using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;

namespace XGenMM.Gateway.Tests;

/// <summary>The gateway with <c>Management:Port</c> on loopback: metrics and probes there, no metrics on the public port.</summary>
public sealed class ManagementPortGatewayFixture : GatewayFixture
{
    public int ManagementPort { get; } = FreePort();

    public Uri ManagementAddress => new($"http://127.0.0.1:{ManagementPort.ToString(CultureInfo.InvariantCulture)}");

    protected override void Configure(Dictionary<string, string?> settings)
    {
        settings["Management:Port"] = ManagementPort.ToString(CultureInfo.InvariantCulture);
        settings["Management:Address"] = "127.0.0.1";
    }
}

/// <summary>The gateway without a management port, listening on every interface (as in a container).</summary>
public sealed class AllInterfacesGatewayFixture : GatewayFixture
{
    protected override void Configure(Dictionary<string, string?> settings) => settings["urls"] = "http://0.0.0.0:0";
}

public sealed class ManagementPortTests(ManagementPortGatewayFixture gateway) : IClassFixture<ManagementPortGatewayFixture>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact(Timeout = 60_000)]
    public async Task Metrics_and_probes_are_served_on_the_management_port_and_metrics_not_on_the_public_one()
    {
        using var management = new HttpClient { BaseAddress = gateway.ManagementAddress };
        string metrics = await management.GetStringAsync("/metrics", Ct);
        Assert.Contains("xgenmm_", metrics, StringComparison.Ordinal);
        foreach (var path in new[] { "/healthz", "/readyz" })
            using (var probe = await management.GetAsync(path, Ct))
                Assert.Equal(HttpStatusCode.OK, probe.StatusCode);

        using var open = gateway.Client();
        using (var refused = await open.GetAsync("/metrics", Ct))
            Assert.Equal(HttpStatusCode.NotFound, refused.StatusCode);
        using (var liveness = await open.GetAsync("/healthz", Ct))
            Assert.Equal(HttpStatusCode.OK, liveness.StatusCode);
        // The port decides, not the Host header a client writes.
        using (var spoofed = new HttpRequestMessage(HttpMethod.Get, "/metrics") { Headers = { Host = "127.0.0.1:" + gateway.ManagementPort.ToString(CultureInfo.InvariantCulture) } })
        using (var refused = await open.SendAsync(spoofed, Ct))
            Assert.Equal(HttpStatusCode.NotFound, refused.StatusCode);
        using (var metricsCase = await open.GetAsync("/METRICS", Ct))
            Assert.Equal(HttpStatusCode.NotFound, metricsCase.StatusCode);
    }

    [Fact(Timeout = 60_000)]
    public async Task The_management_port_serves_nothing_but_metrics_and_probes()
    {
        using var management = gateway.Client(GatewayFixture.AlphaKey);
        management.BaseAddress = gateway.ManagementAddress;
        foreach (var path in new[] { "/", "/index.html", "/v1/models", "/hubs/chat/negotiate" })
            using (var response = await management.GetAsync(path, Ct))
                Assert.True(response.StatusCode == HttpStatusCode.NotFound, $"{path}: {(int)response.StatusCode}");
        using var api = gateway.Client(GatewayFixture.AlphaKey);
        using (var models = await api.GetAsync("/v1/models", Ct))
            Assert.Equal(HttpStatusCode.OK, models.StatusCode);
    }
}

public sealed class LoopbackMetricsTests(AllInterfacesGatewayFixture gateway) : IClassFixture<AllInterfacesGatewayFixture>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact(Timeout = 60_000)]
    public async Task Without_a_management_port_metrics_answer_only_loopback_callers()
    {
        using (var local = gateway.Client())
            Assert.Contains("xgenmm_", await local.GetStringAsync("/metrics", Ct), StringComparison.Ordinal);

        var external = NetworkInterface.GetAllNetworkInterfaces()
            .Where(n => n.OperationalStatus == OperationalStatus.Up && n.NetworkInterfaceType != NetworkInterfaceType.Loopback)
            .SelectMany(n => n.GetIPProperties().UnicastAddresses).Select(a => a.Address)
            .FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork && !IPAddress.IsLoopback(a));
        if (external is null) Assert.Skip("This machine has no non-loopback IPv4 address to call from.");
        using var remote = new HttpClient { BaseAddress = new UriBuilder(gateway.BaseAddress) { Host = external.ToString() }.Uri };
        using (var refused = await remote.GetAsync("/metrics", Ct))
            Assert.Equal(HttpStatusCode.NotFound, refused.StatusCode);
        using (var liveness = await remote.GetAsync("/healthz", Ct))
            Assert.Equal(HttpStatusCode.OK, liveness.StatusCode);
    }
}
