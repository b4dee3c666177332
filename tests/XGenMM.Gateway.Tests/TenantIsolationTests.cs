using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using XGenMM.Cluster.Client;

namespace XGenMM.Gateway.Tests;

/// <summary>The gateway with one decoder of 8 slots and admission control on with a TTFT target a full decoder
/// exceeds: an adversarial tenant filling every slot puts the cluster over its target, so the tenant-share rule
/// decides who is refused.</summary>
public sealed class IsolationGatewayFixture : GatewayFixture
{
    public const int Slots = 8;
    // B alone (2 streams on 8 slots) must stay under it while other test assemblies load the 2 cores (at 0.5 s a CI
    // run refused B alone once); A's 32 users on 8 slots are predicted far over it.
    public const double TtftTargetSeconds = 1.5;
    public const int MaxCompletionTokens = 256;

    protected override void Configure(Dictionary<string, string?> settings)
    {
        settings["Engine:Decode:MaxSlots"] = Slots.ToString(CultureInfo.InvariantCulture);
        settings["Cluster:Admission:TtftTargetSeconds"] = TtftTargetSeconds.ToString(CultureInfo.InvariantCulture);
        settings["Gateway:Limits:MaxCompletionTokens"] = MaxCompletionTokens.ToString(CultureInfo.InvariantCulture);
        // The router reads the registry as often as it may: the in-flight ledger covers the rest.
        settings["Cluster:Routing:RegistryRefresh"] = "00:00:00.100";
    }
}

[CollectionDefinition(Name)]
public sealed class IsolationGatewayTests : ICollectionFixture<IsolationGatewayFixture>
{
    public const string Name = "isolation gateway";
}

/// <summary>
/// Tenant isolation under an adversarial tenant (issue 18): tenant B (beta) runs 2 concurrent streams alone, then
/// again while tenant A (alpha, limits set high) bursts with 4x the slots in closed-loop users. B's TTFT distribution
/// and throughput are measured both times; A's excess must be refused with 429 tenant_over_share (or wait), never B.
/// </summary>
[Collection(IsolationGatewayTests.Name)]
public sealed class TenantIsolationTests(IsolationGatewayFixture gateway)
{
    private const int BStreams = 2, BRequests = 80, AUsers = 4 * IsolationGatewayFixture.Slots, AnswerTokens = 32;
    /// <summary>On 2 shared cores a p99 of 80 samples moves by a scheduler tick or two between runs of the same load:
    /// the bound is 1.5x B alone plus this much.</summary>
    private const double TtftSlackSeconds = 0.03;
    /// <summary>The targets for B beside A's burst: TTFT p99 within this ratio of alone, throughput at most this
    /// much lower.</summary>
    private const double TtftRatio = 1.5, ThroughputLoss = 0.2;
    /// <summary>Alone-then-with-A measurements tried before the targets count as missed (why: at the assertion).</summary>
    private const int Attempts = 3;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private sealed record Outcome(HttpStatusCode Status, double TtftSeconds, string? Code, double? RetryAfterSeconds);

    private JsonObject Body(string text, bool stream, int maxTokens) => new()
    {
        ["model"] = gateway.ModelId,
        ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = text }),
        ["max_tokens"] = maxTokens,
        ["temperature"] = 0,
        ["ignore_eos"] = true,
        ["stream"] = stream,
    };

    /// <summary>One request; for a stream, TTFT is the time to the first chunk with content.</summary>
    private async Task<Outcome> SendAsync(HttpClient http, string text, bool stream, int maxTokens, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        using var response = await http.PostAsJsonAsync("/v1/chat/completions", Body(text, stream, maxTokens), cancellationToken);
        if (!response.IsSuccessStatusCode)
        {
            var error = JsonNode.Parse(await response.Content.ReadAsStringAsync(cancellationToken))!["error"]!;
            return new Outcome(response.StatusCode, double.NaN, (string?)error["code"], response.Headers.RetryAfter?.Delta?.TotalSeconds);
        }
        if (!stream)
        {
            await response.Content.ReadAsStringAsync(cancellationToken);
            return new Outcome(response.StatusCode, double.NaN, null, null);
        }
        double ttft = double.NaN;
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancellationToken));
        while (await reader.ReadLineAsync(cancellationToken) is { } line)
        {
            if (!line.StartsWith("data: {", StringComparison.Ordinal)) continue;
            if (double.IsNaN(ttft) && JsonNode.Parse(line[6..])!["choices"] is JsonArray { Count: > 0 } choices
                && choices[0]!["delta"]?["content"] is JsonValue content && ((string?)content)?.Length > 0)
                ttft = clock.Elapsed.TotalSeconds;
        }
        return new Outcome(response.StatusCode, ttft, null, null);
    }

    /// <summary>B's closed loop: <see cref="BStreams"/> users share <see cref="BRequests"/> requests; returns every
    /// outcome and the requests per second.</summary>
    private async Task<(List<Outcome> Outcomes, double RequestsPerSecond)> RunBAsync(string label)
    {
        using var http = gateway.Client(GatewayFixture.BetaKey);
        var outcomes = new List<Outcome>();
        int next = 0;
        var clock = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, BStreams).Select(_ => Task.Run(async () =>
        {
            while (Interlocked.Increment(ref next) <= BRequests)
            {
                var outcome = await SendAsync(http, $"{label} question {next} about the weather", stream: true, AnswerTokens, Ct);
                lock (outcomes) outcomes.Add(outcome);
            }
        }, Ct)));
        return (outcomes, BRequests / clock.Elapsed.TotalSeconds);
    }

    /// <summary>A's closed-loop users until stopped, each asking for <paramref name="answerTokens"/>; a refused user
    /// comes back after 50 ms (a client that ignores Retry-After), so that A keeps pressing on the door.</summary>
    private async Task<List<Outcome>> BurstAAsync(int answerTokens, CancellationToken stop)
    {
        using var http = gateway.Client(GatewayFixture.AlphaKey);
        var outcomes = new List<Outcome>();
        await Task.WhenAll(Enumerable.Range(0, AUsers).Select(user => Task.Run(async () =>
        {
            for (int i = 0; !stop.IsCancellationRequested; i++)
            {
                Outcome outcome;
                try
                {
                    outcome = await SendAsync(http, $"burst {user} {i} tell me everything", stream: false, answerTokens, stop);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
                lock (outcomes) outcomes.Add(outcome);
                if (outcome.Status != HttpStatusCode.OK) await Task.Delay(50, CancellationToken.None);
            }
        }, CancellationToken.None)));
        return outcomes;
    }

    private static double P99(IEnumerable<Outcome> outcomes)
    {
        var sorted = outcomes.Select(o => o.TtftSeconds).Order().ToArray();
        double rank = 0.99 * (sorted.Length - 1);
        int low = (int)rank;
        return low + 1 < sorted.Length ? sorted[low] + (rank - low) * (sorted[low + 1] - sorted[low]) : sorted[low];
    }

    [Fact(Timeout = 300_000)]
    [Trait("Category", "E2E")]
    public async Task While_A_bursts_at_4x_the_slots_only_A_is_refused_and_B_keeps_its_ttft_and_throughput()
    {
        await RunBAsync("warm-up");
        double overShareBefore = await gateway.MetricAsync("xgenmm_requests_rejected_total", "{reason=\"tenant_over_share\"}");
        var decoder = Assert.Single(await gateway.App.Services.GetRequiredService<IClusterChat>().GetDecodersAsync(Ct));
        var a = new List<Outcome>();
        var attempts = new List<string>();
        bool met = false;
        for (int attempt = 1; attempt <= Attempts && !met; attempt++)
        {
            // Past the decoder's ShareLinger (1 s), so that A's last burst neither holds rows nor counts as active.
            if (attempt > 1) await Task.Delay(TimeSpan.FromSeconds(1.5), Ct);
            var (alone, aloneRate) = await RunBAsync("alone");

            // A asks for answers as long as the gateway allows (the fixture's MaxCompletionTokens): its excess, rounds
            // of the rows it may hold, is then predicted over the TTFT target at any speed this CPU reaches. With
            // answers as short as B's, a fast run predicted A's queue within the target, so A's excess waited (which
            // is allowed) and the refusal path went untested.
            // B's streams start first and A bursts into the rest of the decoder at once (every other slot taken and
            // more of A's requests pressing), the "A bursts while B sends 2 streams". Started the other way
            // round, A's long answers took every slot first and B's first requests waited for the next of them to end
            // (the scheduler does not preempt): up to 0.8 s here, which the test measured instead of the sharing.
            using var stop = new CancellationTokenSource();
            var withARun = RunBAsync("with-a");
            await Task.Delay(TimeSpan.FromMilliseconds(50), Ct);
            var burst = BurstAAsync(IsolationGatewayFixture.MaxCompletionTokens, stop.Token);
            var (withA, withARate) = await withARun;
            // A's answers held while B ran end once it is gone (its rows are held only while B has work).
            await Task.Delay(TimeSpan.FromSeconds(3), Ct);
            await stop.CancelAsync();
            var aNow = await burst;
            a.AddRange(aNow);

            Assert.All(alone.Concat(withA), o => Assert.Equal(HttpStatusCode.OK, o.Status));
            Assert.All(alone.Concat(withA), o => Assert.False(double.IsNaN(o.TtftSeconds)));
            double p99Alone = P99(alone), p99WithA = P99(withA);
            met = withARate >= (1 - ThroughputLoss) * aloneRate && p99WithA <= TtftRatio * p99Alone + TtftSlackSeconds;
            attempts.Add(string.Create(CultureInfo.InvariantCulture,
                $"attempt {attempt}: B alone TTFT p99 {p99Alone * 1000:0} ms, {aloneRate:0.00} req/s; with A TTFT p99 {p99WithA * 1000:0} ms ({p99WithA / p99Alone:0.00}x), {withARate:0.00} req/s ({withARate / aloneRate:0.00}x); A ({AUsers} users, {IsolationGatewayFixture.MaxCompletionTokens}-token answers, decode step {decoder.DecodeStepSeconds * 1000:0.0} ms with B alone): {aNow.Count(o => o.Status == HttpStatusCode.OK)} served, {aNow.Count(o => o.Code == "tenant_over_share")} tenant_over_share, {aNow.Count(o => o.Code == "over_capacity")} over_capacity"));
            TestContext.Current.TestOutputHelper?.WriteLine(attempts[^1]);
        }
        string figures = string.Join("; ", attempts);

        // The targets: B's TTFT p99 within 1.5x of alone (plus a tick of slack) and its throughput within 20%.
        // Up to three attempts, because the test shares the 2 cores with the other test assemblies, whose load moves
        // between B's alone and with-A phases by more than the 20% measured (the load test measures the default over
        // 11 rounds: loadtest/results/2026-12-07-isolation). With the isolation off (SharedStepSlowdown 0) B lost
        // 49-80% of its throughput and its TTFT p99 grew 2-13x in each of 6 attempts (two runs).
        Assert.True(met, figures);

        // A was really bursting: served, and its excess refused at the door with Retry-After, as over its share (429)
        // or, in the moment before the router's view of the decoder shows B's rows, as over capacity (503: A looked
        // alone there). A's users retry 50 ms after a refusal, some 200 requests a second: over a long run that also
        // exhausts its (high) requests-per-minute limit, a refusal of A's own as well.
        Assert.True(a.Any(o => o.Status == HttpStatusCode.OK), figures);
        var refused = a.Where(o => o.Status != HttpStatusCode.OK).ToList();
        Assert.NotEmpty(refused);
        Assert.All(refused.Where(o => o.Code is "tenant_over_share" or "over_capacity"), o => Assert.True(o.RetryAfterSeconds >= 1, $"Retry-After on every {o.Code}"));
        var overShare = a.Where(o => o.Code == "tenant_over_share").ToList();
        Assert.All(overShare, o => Assert.Equal(HttpStatusCode.TooManyRequests, o.Status));
        Assert.All(refused, o => Assert.Contains(o.Code, (string[])["tenant_over_share", "over_capacity", "rate_limit_requests"]));
        Assert.True(await gateway.MetricAsync("xgenmm_requests_rejected_total", "{reason=\"tenant_over_share\"}") >= overShareBefore + overShare.Count, figures);
    }
}
