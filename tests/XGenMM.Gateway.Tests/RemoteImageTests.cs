using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using SkiaSharp;
using XGenMM.Gateway.Hosting;
using XGenMM.Gateway.Images;
using XGenMM.Gateway.OpenAi;

namespace XGenMM.Gateway.Tests;

/// <summary>The remote image fetcher against a real loopback image server (loopback let through for the test only).</summary>
public sealed class RemoteImageTests : IAsyncLifetime
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;
    private static readonly byte[] Image = TestImages.Png(40, 30, SKColors.Orange);
    private WebApplication _server = null!;
    private Uri _base = null!;

    public async ValueTask InitializeAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        _server = builder.Build();
        _server.MapGet("/cat.png", () => Results.Bytes(Image, "image/png"));
        _server.MapGet("/big.png", () => Results.Bytes(new byte[300_000], "image/png"));
        _server.MapGet("/endless.png", async (HttpContext http) =>
        {
            // No Content-Length: the size limit must hold while reading.
            http.Response.ContentType = "image/png";
            var chunk = new byte[16_384];
            for (int i = 0; i < 100; i++) await http.Response.Body.WriteAsync(chunk);
        });
        _server.MapGet("/slow.png", async () => { await Task.Delay(5000); return Results.Bytes(Image, "image/png"); });
        _server.MapGet("/hop/{n:int}", (int n) => Results.Redirect(n == 0 ? "/cat.png" : $"/hop/{n - 1}"));
        _server.MapGet("/to-metadata", () => Results.Redirect("http://169.254.169.254/latest/meta-data/"));
        _server.MapGet("/missing.png", () => Results.NotFound());
        await _server.StartAsync(Ct);
        _base = new Uri(_server.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
    }

    private static RemoteImageFetcher Fetcher(bool enabled = true, bool allowLoopback = true) => new(Options.Create(new RemoteImageOptions
    {
        Enabled = enabled,
        AllowLoopback = allowLoopback,
        MaxBytes = 200_000,
        TimeoutSeconds = 1,
        MaxRedirects = 3,
    }));

    private Task<byte[]> Fetch(RemoteImageFetcher fetcher, string path) => fetcher.FetchAsync(new Uri(_base, path), "url", 1_000_000, Ct);

    [Fact(Timeout = 30_000)]
    public async Task An_allowed_image_is_fetched_byte_for_byte()
    {
        using var fetcher = Fetcher();
        Assert.Equal(Image, await Fetch(fetcher, "/cat.png"));
        Assert.Equal(Image, await Fetch(fetcher, "/hop/2"));
    }

    [Theory(Timeout = 30_000)]
    [InlineData("/hop/5", 400, "image_fetch_failed")]
    [InlineData("/to-metadata", 403, "image_url_forbidden")]
    [InlineData("/big.png", 413, "image_too_large")]
    [InlineData("/endless.png", 413, "image_too_large")]
    [InlineData("/slow.png", 400, "image_fetch_timeout")]
    [InlineData("/missing.png", 400, "image_fetch_failed")]
    public async Task A_bad_remote_image_is_refused_with_its_reason(string path, int status, string code)
    {
        using var fetcher = Fetcher();
        var e = await Assert.ThrowsAsync<OpenAiException>(() => Fetch(fetcher, path));
        Assert.Equal(status, e.Status);
        Assert.Equal(code, e.Code);
    }

    [Fact(Timeout = 30_000)]
    public async Task Loopback_is_forbidden_unless_explicitly_allowed_and_disabled_means_disabled()
    {
        using var guarded = Fetcher(allowLoopback: false);
        Assert.Equal(403, (await Assert.ThrowsAsync<OpenAiException>(() => Fetch(guarded, "/cat.png"))).Status);
        using var disabled = Fetcher(enabled: false);
        Assert.Equal("remote_images_disabled", (await Assert.ThrowsAsync<OpenAiException>(() => Fetch(disabled, "/cat.png"))).Code);
    }

    [Theory]
    [InlineData("127.0.0.1", true)]
    [InlineData("10.0.0.5", true)]
    [InlineData("172.16.0.1", true)]
    [InlineData("172.32.0.1", false)]
    [InlineData("192.168.1.1", true)]
    [InlineData("169.254.169.254", true)]
    [InlineData("100.64.0.1", true)]
    [InlineData("0.0.0.0", true)]
    [InlineData("224.0.0.1", true)]
    [InlineData("8.8.8.8", false)]
    [InlineData("::1", true)]
    [InlineData("fe80::1", true)]
    [InlineData("fd00::1", true)]
    [InlineData("::ffff:10.0.0.1", true)]
    [InlineData("2002:a00:1::", true)]
    [InlineData("2001:4860:4860::8888", false)]
    public void The_address_guard_knows_private_and_public_addresses(string address, bool forbidden) =>
        Assert.Equal(forbidden, RemoteImageFetcher.IsForbidden(IPAddress.Parse(address)));

    public async ValueTask DisposeAsync()
    {
        await _server.StopAsync();
        await _server.DisposeAsync();
    }
}
