using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using System.Net.Sockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using XGenMM.AppHost;
using XGenMM.Gateway.Hosting;
using XGenMM.Gateway.Tenants;

namespace XGenMM.Gateway.Tests;

/// <summary>
/// The real gateway in Local mode (co-hosted silo, real Orleans, real Kestrel on a loopback port) serving a model from
/// disk. Tenants: alpha and beta with roomy limits, "tight" with 2 requests per minute and 1 concurrent stream, "solo"
/// with 1 image per request. Remote image URLs are enabled (behind the address guard).
/// </summary>
public class GatewayFixture : IAsyncLifetime
{
    public const string AlphaKey = "alpha-test-key";
    public const string BetaKey = "beta-test-key";
    public const string TightKey = "tight-test-key";
    public const string SoloKey = "solo-test-key";
    public const string SharedKey = "shared-test-key";

    /// <summary>The co-hosted silo's client gateway port and cluster id: a Cluster-mode gateway joins through them.</summary>
    public int OrleansGatewayPort { get; private set; }
    public string ClusterId { get; private set; } = "";

    public WebApplication App { get; private set; } = null!;
    public Uri BaseAddress { get; private set; } = null!;
    public string ModelId { get; private set; } = "";

    protected virtual string ModelPath => Fixtures.GoldenTinyAnyRes;

    protected virtual void Configure(Dictionary<string, string?> settings) { }

    /// <summary>Runs last on the host builder (after the fixture's settings and log level).</summary>
    protected virtual void ConfigureBuilder(WebApplicationBuilder builder) { }

    public async ValueTask InitializeAsync()
    {
        OrleansGatewayPort = FreePort();
        ClusterId = "gateway-tests-" + Guid.NewGuid().ToString("N")[..8];
        var settings = new Dictionary<string, string?>
        {
            ["Model:Path"] = ModelPath,
            ["Cluster:SiloPort"] = FreePort().ToString(CultureInfo.InvariantCulture),
            ["Cluster:GatewayPort"] = OrleansGatewayPort.ToString(CultureInfo.InvariantCulture),
            ["Cluster:ClusterId"] = ClusterId,
            ["Engine:Decode:MaxSlots"] = "8",
            ["Engine:Decode:MaxSequenceLength"] = "2048",
            ["Engine:Decode:KvCacheBytes"] = (512L << 20).ToString(CultureInfo.InvariantCulture),
            ["Engine:Vision:MaxBatchWaitMilliseconds"] = "2",
            ["Gateway:Limits:MaxBodyBytes"] = (4L << 20).ToString(CultureInfo.InvariantCulture),
            ["Gateway:Limits:MaxImageBytes"] = (2L << 20).ToString(CultureInfo.InvariantCulture),
            ["Gateway:Limits:MaxImagePixels"] = "4000000",
            ["Gateway:Limits:MaxImagesPerRequest"] = "3",
            ["Gateway:Limits:MaxPromptTokens"] = "1500",
            ["Gateway:Limits:MaxCompletionTokens"] = "256",
            ["Gateway:Limits:MaxStreamsPerConnection"] = "2",
            ["Logging:LogLevel:Default"] = "Warning",
            // Shedding off: these tests check answers and limits on a loaded CPU; AdmissionGatewayFixture turns it on.
            ["Cluster:Admission:TtftTargetSeconds"] = "0",
        };
        AddTenant(settings, 0, "alpha", AlphaKey, rpm: 10_000, concurrent: 64, images: 8);
        AddTenant(settings, 1, "beta", BetaKey, rpm: 10_000, concurrent: 64, images: 8);
        AddTenant(settings, 2, "tight", TightKey, rpm: 2, concurrent: 1, images: 8);
        AddTenant(settings, 3, "solo", SoloKey, rpm: 10_000, concurrent: 64, images: 1);
        AddTenant(settings, 4, "shared", SharedKey, rpm: 3, concurrent: 64, images: 8);
        settings["Gateway:RemoteImages:Enabled"] = "true";
        settings["Gateway:RemoteImages:TimeoutSeconds"] = "3";
        Configure(settings);

        App = LocalApp.Build(["--urls", "http://127.0.0.1:0"], builder =>
        {
            builder.Configuration.AddInMemoryCollection(settings);
            builder.Logging.SetMinimumLevel(LogLevel.Warning);
            ConfigureBuilder(builder);
        });
        await App.StartAsync();
        // The public address: not the management port's, when the fixture has one.
        string? management = settings.GetValueOrDefault("Management:Port");
        var address = App.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses
            .First(a => management is null || !a.EndsWith(":" + management, StringComparison.Ordinal));
        BaseAddress = new Uri(address.Replace("[::]", "127.0.0.1", StringComparison.Ordinal).Replace("0.0.0.0", "127.0.0.1", StringComparison.Ordinal));
        ModelId = App.Services.GetRequiredService<ServedModel>().Id;
        using var http = Client();
        for (int i = 0; i < 600; i++)
        {
            if ((await http.GetAsync("/readyz")).IsSuccessStatusCode) return;
            await Task.Delay(100);
        }
        throw new TimeoutException("The gateway did not become ready within 60 s.");
    }

    internal static void AddTenant(Dictionary<string, string?> s, int i, string id, string key, int rpm, int concurrent, int images)
    {
        s[$"Tenants:Tenants:{i}:Id"] = id;
        s[$"Tenants:Tenants:{i}:KeySha256:0"] = TenantDirectory.Hash(key);
        s[$"Tenants:Tenants:{i}:Limits:RequestsPerMinute"] = rpm.ToString(CultureInfo.InvariantCulture);
        s[$"Tenants:Tenants:{i}:Limits:ConcurrentStreams"] = concurrent.ToString(CultureInfo.InvariantCulture);
        s[$"Tenants:Tenants:{i}:Limits:MaxImagesPerRequest"] = images.ToString(CultureInfo.InvariantCulture);
    }

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public HttpClient Client(string? apiKey = null)
    {
        var http = new HttpClient { BaseAddress = BaseAddress, Timeout = TimeSpan.FromSeconds(120) };
        if (apiKey is not null) http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
        return http;
    }

    /// <summary>The greedy answer of the OpenAI API (tenant alpha) to one user turn: an optional image, then the question.</summary>
    public async Task<string> HttpAnswerAsync(string question, byte[]? image = null, string imageType = "image/png", int? maxTokens = null)
    {
        using var http = Client(AlphaKey);
        var content = new JsonArray();
        if (image is not null) content.Add(new JsonObject { ["type"] = "image_url", ["image_url"] = new JsonObject { ["url"] = TestImages.DataUrl(image, imageType) } });
        content.Add(new JsonObject { ["type"] = "text", ["text"] = question });
        var body = new JsonObject
        {
            ["model"] = ModelId,
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = content }),
            ["temperature"] = 0,
        };
        if (maxTokens is int m) body["max_tokens"] = m;
        using var response = await http.PostAsJsonAsync("/v1/chat/completions", body, TestContext.Current.CancellationToken);
        response.EnsureSuccessStatusCode();
        return (string)JsonNode.Parse(await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken))!["choices"]![0]!["message"]!["content"]!;
    }

    /// <summary>The value of one Prometheus sample from /metrics (0 when absent); labels as written, e.g. <c>{device="cpu"}</c>.</summary>
    public async Task<double> MetricAsync(string name, string labels = "")
    {
        using var http = Client();
        return PrometheusSamples.Value(await http.GetStringAsync("/metrics"), name + labels);
    }

    public async ValueTask DisposeAsync()
    {
        if (App is null) return;
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await App.StopAsync(stop.Token);
        await App.DisposeAsync();
        GC.SuppressFinalize(this);
    }
}

[CollectionDefinition(Name)]
public sealed class GatewayTests : ICollectionFixture<GatewayFixture>
{
    public const string Name = "gateway";
}
