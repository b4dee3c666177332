using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using XGenMM.Gateway.Hosting;

namespace XGenMM.Gateway.Tests;

/// <summary>
/// A second gateway in Cluster mode (a pure Orleans client, no engines) in front of the first one's silo: it serves the
/// same answers, tenant limits hold across both gateways, and with an OTLP endpoint configured it exports traces.
/// </summary>
[Collection(GatewayTests.Name)]
public sealed class ClusterModeTests(GatewayFixture gateway)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private async Task<WebApplication> StartClusterGatewayAsync(string? otlpEndpoint = null)
    {
        var settings = new Dictionary<string, string?>
        {
            ["Gateway:Mode"] = "Cluster",
            ["Model:Path"] = Fixtures.GoldenTinyAnyRes,
            ["Cluster:Clustering"] = "Localhost",
            ["Cluster:GatewayPort"] = gateway.OrleansGatewayPort.ToString(CultureInfo.InvariantCulture),
            ["Cluster:ClusterId"] = gateway.ClusterId,
            ["Cluster:Admission:TtftTargetSeconds"] = "0",
            ["Telemetry:OtlpEndpoint"] = otlpEndpoint,
            ["Telemetry:OtlpProtocol"] = "http/protobuf",
        };
        GatewayFixture.AddTenant(settings, 0, "shared", GatewayFixture.SharedKey, rpm: 3, concurrent: 64, images: 8);
        GatewayFixture.AddTenant(settings, 1, "alpha", GatewayFixture.AlphaKey, rpm: 10_000, concurrent: 64, images: 8);
        var app = GatewayApp.Build(["--urls", "http://127.0.0.1:0"], b =>
        {
            b.Configuration.AddInMemoryCollection(settings);
            b.Logging.SetMinimumLevel(LogLevel.Warning);
        });
        await app.StartAsync(Ct);
        return app;
    }

    private static HttpClient ClientOf(WebApplication app, string key)
    {
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        var http = new HttpClient { BaseAddress = new Uri(address), Timeout = TimeSpan.FromSeconds(60) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return http;
    }

    private JsonObject Body(string question, int maxTokens) => new()
    {
        ["model"] = gateway.ModelId,
        ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = question }),
        ["max_tokens"] = maxTokens,
        ["temperature"] = 0,
    };

    [Fact(Timeout = 120_000)]
    public async Task A_cluster_mode_gateway_serves_the_same_answers_and_shares_tenant_limits()
    {
        await using var second = await StartClusterGatewayAsync();
        using var viaSecond = ClientOf(second, GatewayFixture.AlphaKey);
        for (int i = 0; i < 100 && !(await viaSecond.GetAsync("/readyz", Ct)).IsSuccessStatusCode; i++) await Task.Delay(100, Ct);
        using var viaFirst = gateway.Client(GatewayFixture.AlphaKey);
        using var a = await viaFirst.PostAsJsonAsync("/v1/chat/completions", Body("Name three colors.", 10), Ct);
        using var b = await viaSecond.PostAsJsonAsync("/v1/chat/completions", Body("Name three colors.", 10), Ct);
        Assert.Equal(HttpStatusCode.OK, b.StatusCode);
        Assert.Equal((string?)JsonNode.Parse(await a.Content.ReadAsStringAsync(Ct))!["choices"]![0]!["message"]!["content"],
            (string?)JsonNode.Parse(await b.Content.ReadAsStringAsync(Ct))!["choices"]![0]!["message"]!["content"]);

        // "shared" may make 3 requests a minute, wherever they come in.
        using var sharedFirst = gateway.Client(GatewayFixture.SharedKey);
        using var sharedSecond = ClientOf(second, GatewayFixture.SharedKey);
        var statuses = new List<HttpStatusCode>();
        foreach (var http in new[] { sharedFirst, sharedSecond, sharedFirst, sharedSecond })
        {
            using var response = await http.PostAsJsonAsync("/v1/chat/completions", Body("Hi", 2), Ct);
            statuses.Add(response.StatusCode);
        }
        Assert.Equal([HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.TooManyRequests], statuses);
    }

    [Fact(Timeout = 120_000)]
    public async Task With_an_otlp_endpoint_one_request_exports_gateway_vision_and_decoder_spans()
    {
        var received = new List<byte[]>();
        var collector = WebApplication.CreateSlimBuilder();
        collector.WebHost.UseUrls("http://127.0.0.1:0");
        collector.Logging.ClearProviders();
        await using var otlp = collector.Build();
        otlp.MapPost("/v1/traces", async (HttpRequest request) =>
        {
            using var buffer = new MemoryStream();
            await request.Body.CopyToAsync(buffer);
            lock (received) received.Add(buffer.ToArray());
            return Results.Ok();
        });
        await otlp.StartAsync(Ct);
        string endpoint = otlp.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First() + "/v1/traces";

        await using (var traced = await StartClusterGatewayAsync(endpoint))
        {
            using var http = ClientOf(traced, GatewayFixture.AlphaKey);
            for (int i = 0; i < 100 && !(await http.GetAsync("/readyz", Ct)).IsSuccessStatusCode; i++) await Task.Delay(100, Ct);
            var body = Body("What is it?", 3);
            body["messages"] = new JsonArray(new JsonObject
            {
                ["role"] = "user",
                ["content"] = new JsonArray(
                    new JsonObject { ["type"] = "image_url", ["image_url"] = new JsonObject { ["url"] = TestImages.DataUrl(TestImages.Png(50, 70, SkiaSharp.SKColors.Teal)) } },
                    new JsonObject { ["type"] = "text", ["text"] = "What is it?" }),
            });
            using var response = await http.PostAsJsonAsync("/v1/chat/completions", body, Ct);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        } // stopping the gateway flushes its exporter

        string all;
        lock (received) all = Encoding.Latin1.GetString(received.SelectMany(b => b).ToArray());
        Assert.Contains("/v1/chat/completions", all, StringComparison.Ordinal);   // the ASP.NET Core span
        Assert.Contains("IVisionGrain", all, StringComparison.Ordinal);           // client span of the encode call
        Assert.Contains("IDecoderGrain", all, StringComparison.Ordinal);          // client span of the generation call
    }
}
