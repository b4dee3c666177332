using System.Diagnostics;
using System.Globalization;
using System.Net;

namespace XGenMM.Cluster.Tests;

/// <summary>
/// The silo host's HTTP port binds what Silo:HttpAddress says: loopback by default (a silo started by hand or by
/// deploy/local/cluster.sh exposes nothing), every interface when a container sets 0.0.0.0.
/// </summary>
public sealed class SiloBindingTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory(Timeout = 180_000)]
    [InlineData(null, "0100007F")] // the default: 127.0.0.1
    [InlineData("0.0.0.0", "00000000")]
    [Trait("Category", "E2E")]
    public async Task The_silo_http_port_listens_on_the_configured_address(string? address, string expectedHex)
    {
        int httpPort = ChildProcesses.FreePort();
        var environment = new Dictionary<string, string>
        {
            ["Silo__HttpPort"] = httpPort.ToString(CultureInfo.InvariantCulture),
            ["Model__Path"] = Fixtures.GoldenTinyAnyRes,
            ["Cluster__ClusterId"] = "bind-" + Guid.NewGuid().ToString("N")[..8],
            ["Cluster__SiloPort"] = ChildProcesses.FreePort().ToString(CultureInfo.InvariantCulture),
            ["Cluster__GatewayPort"] = ChildProcesses.FreePort().ToString(CultureInfo.InvariantCulture),
        };
        if (address is not null) environment["Silo__HttpAddress"] = address;
        using var silo = ChildProcesses.Start("dotnet", ChildProcesses.SiloDll(), environment);
        try
        {
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
            var clock = Stopwatch.StartNew();
            while (true)
            {
                Assert.False(silo.HasExited, "the silo exited early");
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(120), "the silo's /healthz did not answer on 127.0.0.1 in 120 s");
                try
                {
                    using var live = await http.GetAsync(new Uri($"http://127.0.0.1:{httpPort}/healthz"), Ct);
                    if (live.StatusCode == HttpStatusCode.OK) break;
                }
                catch (HttpRequestException)
                {
                }
                await Task.Delay(200, Ct);
            }
            // The kernel's own table of listening sockets (state 0A) says which address the port is bound to.
            string portHex = httpPort.ToString("X4", CultureInfo.InvariantCulture);
            var listening = File.ReadLines("/proc/net/tcp").Skip(1)
                .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
                .Where(f => f[3] == "0A" && f[1].EndsWith(":" + portHex, StringComparison.Ordinal))
                .Select(f => f[1].Split(':')[0]).ToList();
            Assert.Equal([expectedHex], listening);
        }
        finally
        {
            silo.Kill(entireProcessTree: true);
            await silo.WaitForExitAsync(Ct);
        }
    }
}
