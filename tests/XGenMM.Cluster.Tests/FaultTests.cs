using System.Diagnostics;
using System.Globalization;
using System.Net;
using XGenMM.Cluster.Abstractions;

namespace XGenMM.Cluster.Tests;

/// <summary>
/// Silo and store deaths under real processes (<see cref="LocalCluster"/>): redis, silos and a Cluster-mode gateway on
/// loopback, clients over HTTP. No stream may hang: each one completes, or ends with a typed error within a bound.
/// Every test prints what it measured (the issue's table is re-measured with these tests).
/// </summary>
public sealed class FaultTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>Vision silos hold each image's encode for this long (a batch waiting to fill), so that the kill lands
    /// while every request is inside its vision call.</summary>
    private static readonly Dictionary<string, string> SlowVisionBatches = new()
    {
        ["Engine__Vision__MaxBatchImages"] = "32",
        ["Engine__Vision__MaxBatchWaitMilliseconds"] = "4000",
    };

    private const int Streams = 16;

    [Fact(Timeout = 300_000)]
    [Trait("Category", "E2E")]
    public async Task A_vision_silo_killed_under_16_image_streams_loses_none_the_images_are_encoded_again_on_the_other()
    {
        await using var cluster = await LocalCluster.StartAsync(
            [("vision-a", "vision", SlowVisionBatches), ("vision-b", "vision", SlowVisionBatches), ("decoder", "decoder", null)], decoders: 1, null, Ct);
        var runs = Enumerable.Range(0, Streams).Select(i => cluster.ChatAsync(LocalCluster.DistinctImage(i), $"What is in picture {i}?", 8, Ct)).ToArray();
        await cluster.WaitForEncodesAsync(["vision-a", "vision-b"], Streams, TimeSpan.FromSeconds(30), Ct);
        var killed = Stopwatch.StartNew();
        cluster.KillSilo("vision-a");
        // Bounded: a hung stream fails the test here instead of the test's own timeout.
        var outcomes = await Task.WhenAll(runs).WaitAsync(TimeSpan.FromSeconds(120), Ct);
        double last = killed.Elapsed.TotalSeconds;
        TestContext.Current.SendDiagnosticMessage(string.Create(CultureInfo.InvariantCulture,
            $"vision kill with a second vision silo: {outcomes.Count(o => o.Completed)}/{Streams} completed, last ended {last:0.00} s after the kill; statuses {string.Join(',', outcomes.Select(o => $"{(int)o.Status}:{o.ErrorCode}"))}"));
        Assert.All(outcomes, o => Assert.True(o.Completed, $"a stream did not complete: {o}"));
        // Some of the 16 images were on the killed silo (placement spreads them by key): their calls were ended and
        // the images encoded again on the other one.
        Assert.Contains(cluster.GatewayLog, l => l.Contains("left the cluster", StringComparison.Ordinal));
        Assert.False(cluster.Silo("vision-b").HasExited);
        Assert.False(cluster.Gateway.HasExited);
    }

    [Fact(Timeout = 300_000)]
    [Trait("Category", "E2E")]
    public async Task The_only_vision_silo_killed_under_16_image_streams_fails_each_with_a_typed_503_within_5_s()
    {
        await using var cluster = await LocalCluster.StartAsync(
            [("vision", "vision", SlowVisionBatches), ("decoder-a", "decoder", null), ("decoder-b", "decoder", null)], decoders: 2, null, Ct);
        var runs = Enumerable.Range(0, Streams).Select(i => cluster.ChatAsync(LocalCluster.DistinctImage(i), $"What is in picture {i}?", 8, Ct)).ToArray();
        // Every request admitted (the tenant grain may live on the silo about to die) and inside its vision call.
        await cluster.WaitForEncodesAsync(["vision"], Streams, TimeSpan.FromSeconds(30), Ct);
        var killed = Stopwatch.StartNew();
        cluster.KillSilo("vision");
        var ended = runs.Select(async r => (Outcome: await r, After: killed.Elapsed)).ToArray();
        var outcomes = await Task.WhenAll(ended).WaitAsync(TimeSpan.FromSeconds(60), Ct);
        TestContext.Current.SendDiagnosticMessage(string.Create(CultureInfo.InvariantCulture,
            $"only vision silo killed: ended {string.Join(' ', outcomes.Select(o => $"{o.After.TotalSeconds:0.00}s/{(int)o.Outcome.Status}:{o.Outcome.ErrorCode}"))}"));
        Assert.All(outcomes, o =>
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, o.Outcome.Status);
            Assert.Equal("no_vision_silo", o.Outcome.ErrorCode);
            Assert.True(o.Outcome.RetryAfterSeconds >= 1, "a 503 without Retry-After");
            Assert.True(o.After < TimeSpan.FromSeconds(5), $"a request ended {o.After.TotalSeconds:0.00} s after the kill");
        });

        // A new image request is refused at once; text requests are still served.
        var fresh = await cluster.ChatAsync(LocalCluster.DistinctImage(100), "And this one?", 8, Ct);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, fresh.Status);
        Assert.Equal("no_vision_silo", fresh.ErrorCode);
        TestContext.Current.SendDiagnosticMessage(string.Create(CultureInfo.InvariantCulture, $"new image request after the kill: 503 in {fresh.Elapsed.TotalSeconds:0.000} s"));
        Assert.True(fresh.Elapsed < TimeSpan.FromSeconds(5));
        var text = await cluster.ChatAsync(null, "Say something.", 8, Ct);
        Assert.True(text.Completed, $"a text request after the vision silo's death: {text}");
    }

    [Fact(Timeout = 300_000)]
    [Trait("Category", "E2E")]
    public async Task Killing_redis_refuses_new_requests_with_a_503_within_5_s_and_they_are_served_again_when_it_returns()
    {
        await using var cluster = await LocalCluster.StartAsync([("both", "vision,decoder", null)], decoders: 1, null, Ct);
        Assert.True((await cluster.ChatAsync(null, "Warm up.", 4, Ct)).Completed);
        // The gateway and the silo: redis itself is the one restarted.
        var pids = new[] { cluster.Gateway.Id, cluster.Silo("both").Id };

        var killed = Stopwatch.StartNew();
        cluster.KillRedis();
        ChatOutcome refused;
        while (true)
        {
            refused = await cluster.ChatAsync(null, "Are you there?", 4, Ct).WaitAsync(TimeSpan.FromSeconds(10), Ct);
            if (refused.Status != HttpStatusCode.OK) break;
            Assert.True(killed.Elapsed < TimeSpan.FromSeconds(10), "requests were still admitted 10 s after redis died");
            await Task.Delay(100, Ct);
        }
        var refusedAfter = killed.Elapsed;
        TestContext.Current.SendDiagnosticMessage(string.Create(CultureInfo.InvariantCulture,
            $"redis killed: first refusal {(int)refused.Status} {refused.ErrorCode} {refusedAfter.TotalSeconds:0.00} s after the kill (that request took {refused.Elapsed.TotalSeconds:0.00} s)"));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.Status);
        Assert.Contains(refused.ErrorCode, new[] { "membership_unavailable", "cluster_timeout" });
        Assert.True(refused.RetryAfterSeconds >= 1);
        Assert.True(refusedAfter < TimeSpan.FromSeconds(5), $"the first 503 came {refusedAfter.TotalSeconds:0.00} s after the kill");
        // While it is down, every new request is refused quickly.
        var during = await cluster.ChatAsync(null, "Still there?", 4, Ct);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, during.Status);
        Assert.True(during.Elapsed < TimeSpan.FromSeconds(5));

        var restarted = Stopwatch.StartNew();
        cluster.RestartRedis();
        ChatOutcome served;
        while (true)
        {
            served = await cluster.ChatAsync(null, "Back?", 4, Ct).WaitAsync(TimeSpan.FromSeconds(10), Ct);
            if (served.Completed) break;
            Assert.True(restarted.Elapsed < TimeSpan.FromSeconds(30), $"requests were not served 30 s after redis returned: {served}");
            await Task.Delay(200, Ct);
        }
        TestContext.Current.SendDiagnosticMessage(string.Create(CultureInfo.InvariantCulture,
            $"redis restarted: first served request {restarted.Elapsed.TotalSeconds:0.00} s after the restart"));
        // No process was restarted: the same gateway and silo serve.
        Assert.All(cluster.Processes.Where(p => pids.Contains(p.Id)), p => Assert.False(p.HasExited));
    }

    [Fact(Timeout = 300_000)]
    [Trait("Category", "E2E")]
    public async Task A_silo_and_a_gateway_started_before_their_redis_wait_for_it_and_serve_once_it_answers()
    {
        // Pods come up in any order: before this, each exited at once with an unhandled RedisConnectionException.
        var late = TimeSpan.FromSeconds(8);
        var clock = Stopwatch.StartNew();
        await using var cluster = await LocalCluster.StartAsync([("both", "vision,decoder", null)], decoders: 1, null, Ct, redisAfter: late);
        var ready = clock.Elapsed;
        // The silo waited for the store before reading its membership table, not merely started after it. (Whether the
        // gateway's Orleans client sees a failure to retry depends on timing: its first read may wait in the Redis
        // client's queue until the store is up; ClusterConnectRetryFilterTests cover the retries.)
        Assert.Contains(cluster.SiloLogs["both"], l => l.Contains("The membership store does not answer yet", StringComparison.Ordinal));
        Assert.Contains(cluster.SiloLogs["both"], l => l.Contains("The membership store answers after", StringComparison.Ordinal));
        var answer = await cluster.ChatAsync(null, "Up at last?", 8, Ct);
        Assert.True(answer.Completed, $"the first request: {answer}");
        TestContext.Current.SendDiagnosticMessage(string.Create(CultureInfo.InvariantCulture,
            $"redis started {late.TotalSeconds:0} s after the silo and the gateway; cluster ready {(ready - late).TotalSeconds:0.0} s after redis"));
    }

    [Fact(Timeout = 300_000)]
    [Trait("Category", "E2E")]
    public async Task A_dead_decoder_silo_leaves_readiness_and_the_registry_within_one_probe_period_of_its_death_being_declared()
    {
        await using var cluster = await LocalCluster.StartAsync(
            [("vision", "vision", null), ("decoder-a", "decoder", null), ("decoder-b", "decoder", null)], decoders: 2, null, Ct);
        var registry = cluster.Client.GetGrain<IDecoderRegistryGrain>(0);
        var killed = Stopwatch.StartNew();
        cluster.KillSilo("decoder-b");
        TimeSpan? declared = null, ready = null, listed = null;
        while (declared is null || ready is null || listed is null)
        {
            Assert.True(killed.Elapsed < TimeSpan.FromSeconds(30), $"after 30 s: declared {declared}, readyz {ready}, registry {listed}");
            try
            {
                if (declared is null && !(await cluster.ActiveSilosAsync(Ct)).Contains("decoder-b")) declared = killed.Elapsed;
            }
            catch (Exception e) when (e is OperationCanceledException or OrleansException or TimeoutException)
            {
                // The silo that took the call may be the dead one: read again.
            }
            if (ready is null && await cluster.ReadyzAsync(Ct) is (HttpStatusCode.OK, 1)) ready = killed.Elapsed;
            try
            {
                using var call = CancellationTokenSource.CreateLinkedTokenSource(Ct);
                call.CancelAfter(TimeSpan.FromSeconds(1));
                if (listed is null && (await registry.List(call.Token)).Length == 1) listed = killed.Elapsed;
            }
            catch (Exception e) when (e is OperationCanceledException or OrleansException or TimeoutException)
            {
                // The registry may have lived on the dead silo: it is placed again on the next call.
            }
            await Task.Delay(100, Ct);
        }
        TestContext.Current.SendDiagnosticMessage(string.Create(CultureInfo.InvariantCulture,
            $"decoder killed: declared dead after {declared!.Value.TotalSeconds:0.00} s, /readyz decoders:1 after {ready!.Value.TotalSeconds:0.00} s, registry 1 after {listed!.Value.TotalSeconds:0.00} s (probe period {LocalCluster.ProbeTimeout.TotalSeconds} s)"));
        // Polls here are 100 ms apart and each view is one silo's: allow that much on top of the probe period.
        var bound = LocalCluster.ProbeTimeout + TimeSpan.FromMilliseconds(500);
        Assert.True(ready - declared <= bound, $"/readyz dropped the dead decoder {(ready - declared)!.Value.TotalSeconds:0.00} s after its death was declared");
        Assert.True(listed - declared <= bound, $"the registry dropped the dead decoder {(listed - declared)!.Value.TotalSeconds:0.00} s after its death was declared");
        var after = await cluster.ChatAsync(null, "Still serving?", 8, Ct);
        Assert.True(after.Completed, $"a request after the decoder's death: {after}");
    }
}
