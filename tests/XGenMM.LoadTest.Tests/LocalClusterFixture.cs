using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using XGenMM.AppHost;
using XGenMM.Gateway.Hosting;
using XGenMM.Gateway.Tenants;
using XGenMM.LoadTest.Cli;
using XGenMM.LoadTest.Clients;
using XGenMM.LoadTest.Load;
using XGenMM.LoadTest.Metrics;

namespace XGenMM.LoadTest.Tests;

/// <summary>
/// A local single-process cluster to load: the real gateway in Local mode (co-hosted silo with both roles, real Orleans,
/// Kestrel on a loopback port) serving the tiny golden anyres checkpoint. Tenants alpha and beta have roomy limits, solo may send one image per request;
/// the limits are small enough that a few requests stay fast on a busy two-core machine.
/// </summary>
public sealed class LocalClusterFixture : IAsyncLifetime
{
    public const string AlphaKey = "alpha-load-key";
    public const string BetaKey = "beta-load-key";
    /// <summary>A tenant allowed one image per request (the gateway allows three).</summary>
    public const string SoloKey = "solo-load-key";
    /// <summary>A tenant allowed one stream at a time: a second one is refused (429, Retry-After 1 s).</summary>
    public const string SingleKey = "single-load-key";

    public WebApplication App { get; private set; } = null!;
    public Uri BaseAddress { get; private set; } = null!;

    public async ValueTask InitializeAsync()
    {
        var settings = new Dictionary<string, string?>
        {
            ["Model:Path"] = Fixtures.GoldenTinyAnyRes,
            ["Cluster:SiloPort"] = FreePort().ToString(CultureInfo.InvariantCulture),
            ["Cluster:GatewayPort"] = FreePort().ToString(CultureInfo.InvariantCulture),
            ["Cluster:ClusterId"] = "loadtest-tests-" + Guid.NewGuid().ToString("N")[..8],
            ["Engine:Decode:MaxSlots"] = "16",
            ["Engine:Decode:MaxSequenceLength"] = "2048",
            ["Engine:Decode:KvCacheBytes"] = (256L << 20).ToString(CultureInfo.InvariantCulture),
            ["Engine:Vision:MaxBatchWaitMilliseconds"] = "2",
            ["Gateway:Limits:MaxImagesPerRequest"] = "3",
            ["Gateway:Limits:MaxCompletionTokens"] = "256",
            ["Logging:LogLevel:Default"] = "Warning",
            // Shedding off: the tests compare client counts with the server's, and a loaded CPU would shed at 2 s.
            ["Cluster:Admission:TtftTargetSeconds"] = "0",
        };
        AddTenant(settings, 0, "alpha", AlphaKey, images: 8);
        AddTenant(settings, 1, "beta", BetaKey, images: 8);
        AddTenant(settings, 2, "solo", SoloKey, images: 1);
        AddTenant(settings, 3, "single", SingleKey, images: 1, streams: 1);

        App = LocalApp.Build(["--urls", "http://127.0.0.1:0"], builder =>
        {
            builder.Configuration.AddInMemoryCollection(settings);
            builder.Logging.SetMinimumLevel(LogLevel.Warning);
        });
        await App.StartAsync();
        var address = App.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        BaseAddress = new Uri(address.Replace("[::]", "127.0.0.1", StringComparison.Ordinal).TrimEnd('/') + "/");
        using var http = new HttpClient { BaseAddress = BaseAddress };
        for (int i = 0; i < 600; i++)
        {
            if ((await http.GetAsync("readyz")).IsSuccessStatusCode) return;
            await Task.Delay(100);
        }
        throw new TimeoutException("The gateway did not become ready within 60 s.");
    }

    private static void AddTenant(Dictionary<string, string?> s, int i, string id, string key, int images, int streams = 64)
    {
        s[$"Tenants:Tenants:{i}:Id"] = id;
        s[$"Tenants:Tenants:{i}:KeySha256:0"] = TenantDirectory.Hash(key);
        s[$"Tenants:Tenants:{i}:Limits:RequestsPerMinute"] = "100000";
        s[$"Tenants:Tenants:{i}:Limits:TokensPerMinute"] = "100000000";
        s[$"Tenants:Tenants:{i}:Limits:ConcurrentStreams"] = streams.ToString(CultureInfo.InvariantCulture);
        s[$"Tenants:Tenants:{i}:Limits:MaxImagesPerRequest"] = images.ToString(CultureInfo.InvariantCulture);
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>Settings for a short experiment against this cluster: text only, 4 output tokens, no warm-up.</summary>
    public ExperimentSettings Settings(string name, params string[] flags)
    {
        var request = CommandLine.Parse(["--url", BaseAddress.ToString(), "--warmup", "0", "--output-tokens", "4", "--input-words", "12",
            "--request-timeout", "60", "--drain-timeout", "30", "--experiment", name, .. flags]);
        return Assert.Single(request.Experiments);
    }

    public static Task<ExperimentResult> RunAsync(ExperimentSettings settings) =>
        new ExperimentRunner().RunAsync(settings, TestContext.Current.CancellationToken);

    public async ValueTask DisposeAsync()
    {
        if (App is null) return;
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await App.StopAsync(stop.Token);
        await App.DisposeAsync();
    }
}

[CollectionDefinition(Name)]
public sealed class LocalClusterTests : ICollectionFixture<LocalClusterFixture>
{
    public const string Name = "local cluster";
}
