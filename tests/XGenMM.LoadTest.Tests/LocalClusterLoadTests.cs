using XGenMM.LoadTest.Metrics;

namespace XGenMM.LoadTest.Tests;

/// <summary>
/// The tool run briefly against a local single-process cluster: what it counts must be what the gateway's /metrics
/// counted, and the load must be the load that was asked for.
/// </summary>
[Collection(LocalClusterTests.Name)]
[Trait("Category", "E2E")]
public sealed class LocalClusterLoadTests(LocalClusterFixture cluster)
{
    [Fact(Timeout = 60_000)]
    public async Task Closed_loop_counts_match_the_gateway_metrics_per_tenant_and_hold_the_concurrency()
    {
        var settings = cluster.Settings("mix", "--protocol", "http", "--mode", "closed", "--concurrency", "4", "--requests", "24",
            "--tenant", $"a:{LocalClusterFixture.AlphaKey}:2", "--tenant", $"b:{LocalClusterFixture.BetaKey}:1", "--output-tokens", "8");
        var result = await LocalClusterFixture.RunAsync(settings);

        var p = Assert.Single(result.Points);
        Assert.Equal(24, p.Requests);
        Assert.Equal(24, p.Succeeded);
        Assert.Empty(p.Errors);
        // ignore_eos makes every answer exactly max_tokens long.
        Assert.Equal(24 * 8, p.OutputTokens);
        var server = Assert.IsType<ServerDelta>(p.Server);
        Assert.Equal(24, server.RequestsSucceeded);
        Assert.Equal(24, server.RequestsByFinishReason["length"]);
        Assert.Equal(p.OutputTokens, server.GenerationTokens);
        Assert.Equal(24, server.Ttft!.Count);

        // Shares 2:1, exactly, and each tenant's own counts equal the server's counters for that tenant.
        var a = p.Tenants.Single(t => t.Tenant == "a");
        var b = p.Tenants.Single(t => t.Tenant == "b");
        Assert.Equal(("alpha", 16, "beta", 8), (a.ServerId, a.Succeeded, b.ServerId, b.Succeeded));
        foreach (var t in new[] { a, b })
        {
            Assert.Equal(t.Succeeded, server.RequestsByTenant[t.ServerId!]);
            Assert.Equal(t.OutputTokens, server.GenerationTokensByTenant[t.ServerId!]);
            Assert.Equal(t.PromptTokens, server.PromptTokensByTenant[t.ServerId!]);
        }

        // Four users, never more in flight, and (apart from the moment between an answer and the next request) always four.
        Assert.Equal(4, p.PeakConcurrency);
        Assert.InRange(p.MeanConcurrency, 3.6, 4.0);
        Assert.All(new[] { p.Ttft, p.Tpot, p.E2e }, d => Assert.Equal(24, d.Count));
        // One ITL sample per streamed chunk after the first: at most one per token (a token may decode to no text).
        Assert.InRange(p.Itl.Count, 24 * 6, 24 * 7);
        Assert.True(p.Ttft.P50 <= p.E2e.P50);
    }

    [Fact(Timeout = 60_000)]
    public async Task Closed_loop_over_the_hub_with_multi_turn_conversations_holds_the_concurrency()
    {
        var settings = cluster.Settings("hub", "--protocol", "signalr", "--mode", "closed", "--concurrency", "6", "--requests", "30",
            "--turns", "3", "--api-key", LocalClusterFixture.AlphaKey, "--output-tokens", "6");
        var result = await LocalClusterFixture.RunAsync(settings);

        var p = Assert.Single(result.Points);
        Assert.Equal("signalr-json", result.Protocol);
        Assert.Equal((30, 30), (p.Requests, p.Succeeded));
        Assert.Equal(6, p.PeakConcurrency);
        Assert.InRange(p.MeanConcurrency, 5.4, 6.0);
        Assert.Equal(30, p.Server!.RequestsByTenant["alpha"]);
        Assert.Equal(30 * 6, p.Server.GenerationTokensByTenant["alpha"]);
        Assert.Equal(p.PromptTokens, (long)p.Server.PromptTokensByTenant["alpha"]);
        // Later turns resend the history with the answers: their prompts grow turn by turn.
        Assert.Equal([0, 1, 2], p.Turns.Select(t => t.Turn));
        Assert.Equal(30, p.Turns.Sum(t => t.Requests));
        Assert.True(p.Turns[0].MeanPromptTokens < p.Turns[1].MeanPromptTokens && p.Turns[1].MeanPromptTokens < p.Turns[2].MeanPromptTokens,
            string.Join(", ", p.Turns.Select(t => t.MeanPromptTokens)));
    }

    [Fact(Timeout = 60_000)]
    public async Task Open_loop_sends_at_the_requested_rate()
    {
        // 40 Poisson arrivals at 20 req/s: the driver must keep to its schedule, and the schedule to the rate.
        var settings = cluster.Settings("open", "--protocol", "http", "--mode", "open", "--rate", "20", "--burstiness", "1",
            "--requests", "40", "--api-key", LocalClusterFixture.AlphaKey, "--output-tokens", "2");
        var result = await LocalClusterFixture.RunAsync(settings);

        var p = Assert.Single(result.Points);
        Assert.Equal((40, 40), (p.Requests, p.Succeeded));
        Assert.Equal(20, p.OfferedRate);
        Assert.InRange(p.AchievedArrivalRate / p.ScheduledArrivalRate, 0.95, 1.05);
        // Poisson: the mean of 39 gaps has a relative spread of 1/sqrt(39) = 16%; three of those either side.
        Assert.InRange(p.ScheduledArrivalRate, 20 * (1 - 0.48), 20 * (1 + 0.48));
        Assert.InRange(p.MaxScheduleLagMs, 0, 250);
        // Far below capacity: everything offered is served.
        Assert.InRange(p.ServedFraction!.Value, 0.85, 1.2);
        Assert.Equal(40, p.Server!.RequestsSucceeded);
    }

    [Fact(Timeout = 60_000)]
    public async Task Errors_are_counted_by_type()
    {
        // Half the requests come from a key the gateway does not know: 401 invalid_api_key, counted per tenant.
        var bad = cluster.Settings("bad-key", "--protocol", "http", "--mode", "closed", "--concurrency", "2", "--requests", "10",
            "--tenant", $"good:{LocalClusterFixture.AlphaKey}:1", "--tenant", "mallory:not-a-key:1");
        var p = Assert.Single((await LocalClusterFixture.RunAsync(bad)).Points);
        Assert.Equal((10, 5, 5), (p.Requests, p.Succeeded, p.Failed));
        Assert.Equal(new Dictionary<string, int> { ["401 invalid_api_key"] = 5 }, p.Errors);
        Assert.Equal(5, p.ErrorsByStatus[401]);
        var mallory = p.Tenants.Single(t => t.Tenant == "mallory");
        Assert.Null(mallory.ServerId);
        Assert.Equal((0, 5), (mallory.Succeeded, mallory.Failed));
        Assert.Equal(5, p.Server!.RequestsSucceeded);

        // Over the hub, more images than the tenant may send: the hub's "400 too_many_images", which the gateway counts too
        // (its tenant quota refuses the turn; limits checked before the quota are not in xgenmm_requests_rejected_total).
        var images = cluster.Settings("too-many-images", "--protocol", "signalr", "--mode", "closed", "--concurrency", "2", "--requests", "6",
            "--api-key", LocalClusterFixture.SoloKey, "--images", "2", "--image-sizes", "32x32");
        var q = Assert.Single((await LocalClusterFixture.RunAsync(images)).Points);
        Assert.Equal(new Dictionary<string, int> { ["400 too_many_images"] = 6 }, q.Errors);
        Assert.Equal(6, q.ErrorsByStatus[400]);
        Assert.Equal(6, q.Server!.RejectedByReason["too_many_images"]);
        Assert.Equal(0, q.Server.RequestsSucceeded);
    }

    [Fact(Timeout = 60_000)]
    public async Task Repeated_images_hit_the_vision_cache_and_unique_images_do_not()
    {
        string[] common = ["--protocol", "http", "--mode", "closed", "--concurrency", "2", "--requests", "8", "--images", "1",
            "--api-key", LocalClusterFixture.BetaKey, "--image-sizes", "300x640,640x300"];
        var repeated = Assert.Single((await LocalClusterFixture.RunAsync(cluster.Settings("cache-on", [.. common, "--image-reuse", "repeated", "--image-pool", "2", "--warmup", "2"]))).Points);
        var unique = Assert.Single((await LocalClusterFixture.RunAsync(cluster.Settings("cache-off", [.. common, "--image-reuse", "unique"]))).Points);

        Assert.Equal((8, 8), (repeated.Succeeded, unique.Succeeded));
        // The warm-up saw both images of the pool, so the measured requests make the vision engine encode nothing (the
        // image's vision grain still holds its tokens, or the engine's cache does); every unique image is encoded once.
        Assert.Equal(0, repeated.Server!.VisionEncodes);
        Assert.Equal((8, 0, 8), (unique.Server!.MmCacheQueries, unique.Server.MmCacheHits, unique.Server.VisionEncodes));
        Assert.True(repeated.ImageTokens > 0);
        Assert.Equal(repeated.ImageTokens, (long)repeated.Server.ImageTokensByTenant["beta"]);
        Assert.Equal(unique.ImageTokens, (long)unique.Server.ImageTokensByTenant["beta"]);
    }

    [Fact(Timeout = 60_000)]
    public async Task A_sweep_stops_at_the_first_rate_that_misses_the_slo()
    {
        // A TTFT objective of a microsecond cannot be met: the sweep must stop after its first rate, with no knee.
        var settings = cluster.Settings("sweep", "--protocol", "http", "--mode", "sweep", "--sweep-start", "10", "--sweep-factor", "2",
            "--sweep-steps", "4", "--requests", "6", "--api-key", LocalClusterFixture.AlphaKey, "--slo-ttft-ms", "0.001");
        var result = await LocalClusterFixture.RunAsync(settings);
        var p = Assert.Single(result.Points);
        Assert.Equal(0, p.SloAttainment);
        Assert.Equal(0, p.Goodput);
        Assert.Null(result.Knee!.Label);
        Assert.Contains("SLO attainment 0%", result.Knee.Reason, StringComparison.Ordinal);
    }
}
