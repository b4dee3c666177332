using System.Diagnostics;
using System.Net;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using XGenMM.Cluster.Abstractions;
using XGenMM.Cluster.Abstractions.Telemetry;
using XGenMM.Cluster.Client;
using XGenMM.Cluster.Hosting;
using XGenMM.ServiceDefaults;
using XGenMM.Model.Tokenization;

using static XGenMM.Cluster.Tests.ChildProcesses;

namespace XGenMM.Cluster.Tests;

/// <summary>
/// The real thing on loopback: redis-server for membership, three silo processes (one vision, two decoders) and
/// this test process as the client. One decoder silo gets SIGKILL under load; every stream still completes.
/// </summary>
public sealed class MultiProcessTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact(Timeout = 300_000)]
    [Trait("Category", "E2E")]
    public async Task Redis_membership_with_three_silo_processes_survives_a_SIGKILL()
    {
        string redisServer = File.Exists("/usr/bin/redis-server") ? "/usr/bin/redis-server"
            : throw new InvalidOperationException("redis-server is not installed; ./test.sh installs it (build/install-test-deps.sh).");
        var processes = new List<Process>();
        try
        {
            int redisPort = FreePort();
            processes.Add(Start(redisServer, $"--port {redisPort} --bind 127.0.0.1 --save \"\" --appendonly no", new()));
            string redis = $"127.0.0.1:{redisPort}";
            string clusterId = "mp-" + Guid.NewGuid().ToString("N")[..8];
            var silos = new Dictionary<string, Process>();
            var httpPorts = new Dictionary<string, int>();
            foreach (var (name, roles) in new[] { ("vision", "vision"), ("decoder-a", "decoder"), ("decoder-b", "decoder") })
            {
                httpPorts[name] = FreePort();
                silos[name] = Start("dotnet", SiloDll(), new()
                {
                    ["Silo__Roles"] = roles,
                    ["Silo__HttpPort"] = httpPorts[name].ToString(System.Globalization.CultureInfo.InvariantCulture),
                    ["Silo__DrainTimeoutSeconds"] = "2",
                    ["Model__Path"] = Fixtures.GoldenTinyAnyRes,
                    ["Cluster__Clustering"] = "Redis",
                    ["Cluster__RedisConnectionString"] = redis,
                    ["Cluster__ClusterId"] = clusterId,
                    ["Cluster__SiloPort"] = FreePort().ToString(System.Globalization.CultureInfo.InvariantCulture),
                    ["Cluster__GatewayPort"] = FreePort().ToString(System.Globalization.CultureInfo.InvariantCulture),
                    ["Cluster__SiloName"] = name,
                    ["Engine__Decode__MaxSequenceLength"] = "1024",
                    ["Engine__Decode__KvCacheBytes"] = "1073741824",
                });
                processes.Add(silos[name]);
            }

            var config = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
            {
                ["Cluster:Clustering"] = "Redis", ["Cluster:RedisConnectionString"] = redis, ["Cluster:ClusterId"] = clusterId,
            }).Build();
            using var client = Host.CreateDefaultBuilder()
                .ConfigureLogging(l => l.SetMinimumLevel(LogLevel.Warning))
                .UseOrleansClient(c => c.UseXGenMMClustering(config)).Build();
            await client.StartAsync(Ct);
            var grains = client.Services.GetRequiredService<IClusterClient>();
            using var chat = new ClusterChat(grains, Options.Create(new ClusterChatOptions { RegistryRefresh = TimeSpan.Zero, NoDecoderWait = TimeSpan.FromSeconds(90), Admission = { TtftTargetSeconds = 0 } }),
                NullLogger<ClusterChat>.Instance);
            var registry = grains.GetGrain<IDecoderRegistryGrain>(0);
            var clock = Stopwatch.StartNew();
            // The cluster is up when both decoders registered and the vision silo is active (it can still be joining
            // when the decoders are there: an encode then is refused at once with 503 no_vision_silo, by design).
            while ((await registry.List()).Length < 2
                || !(await grains.GetGrain<IClusterViewGrain>(0).Read()).Silos.Any(v => v.Roles.Contains("vision")))
            {
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(90), "the two decoder silos did not register, or the vision silo did not become active, in 90 s");
                Assert.All(processes, p => Assert.False(p.HasExited, $"a process exited early with {(p.HasExited ? p.ExitCode : 0)}"));
                await Task.Delay(200, Ct);
            }

            var tokenizer = XGenMMTokenizer.FromDirectory(Fixtures.GoldenTinyAnyRes);
            var imageBytes = File.ReadAllBytes(Path.Combine(Fixtures.GoldenTinyAnyRes, "synthetic_1000x300.png"));
            var image = await chat.EncodeImageAsync(ClusterFixture.Key("mp", imageBytes), imageBytes, Ct);
            // What a gateway does when the tokens of its images were lost with a silo: encode again.
            async Task<ImageRef[]> Reencode(int i, CancellationToken ct) => i % 2 == 0 ? [await chat.EncodeImageAsync(ClusterFixture.Key("mp", imageBytes), imageBytes, ct)] : [];
            const int Tokens = 300;
            GenerationRequest Request(int i) => new()
            {
                RequestId = $"mp{i}", Tenant = "t", ConversationId = $"conv{i}", MaxNewTokens = Tokens, StopTokenIds = [], Images = i % 2 == 0 ? [image] : [],
                PromptIds = tokenizer.Encode(ChatTemplate.Render([new ChatMessage("user", (i % 2 == 0 ? "<image>\n" : "") + $"Question {i}?")], true, true)).ToArray(),
            };
            var progress = new int[8];
            var runs = Enumerable.Range(0, 8).Select(async i =>
            {
                var tokens = new List<int>();
                await foreach (var c in chat.GenerateAsync(Request(i), ct => Reencode(i, ct), Ct))
                {
                    if (c.IsFinal) return (tokens, c);
                    tokens.Add(c.TokenId);
                    Interlocked.Increment(ref progress[i]);
                }
                throw new InvalidOperationException("stream ended without a final chunk");
            }).ToList();
            while (progress.Any(p => p < 2)) await Task.Delay(5, Ct);
            silos["decoder-b"].Kill(); // SIGKILL
            var results = await Task.WhenAll(runs);
            Assert.All(results, r =>
            {
                Assert.Equal(Tokens, r.tokens.Count);
                Assert.Equal(FinishKind.Length, r.c.Finish);
            });
            // The same requests again on the surviving decoder give the same tokens (greedy): nothing was lost or doubled.
            for (int i = 0; i < 8; i++)
            {
                var again = new List<int>();
                await foreach (var c in chat.GenerateAsync(Request(i) with { ConversationId = null }, ct => Reencode(i, ct), Ct)) if (!c.IsFinal) again.Add(c.TokenId);
                Assert.Equal(again, results[i].tokens);
            }
            Assert.False(silos["vision"].HasExited);
            Assert.False(silos["decoder-a"].HasExited);

            // The surviving decoder silo serves its own engine's counters (and the process's) at /metrics: at least the
            // eight re-runs above were generated there.
            using var http = new HttpClient();
            string metrics = await http.GetStringAsync(new Uri($"http://127.0.0.1:{httpPorts["decoder-a"]}/metrics"), Ct);
            double generated = PrometheusSamples.Sum(metrics, MetricNames.DecoderGeneratedTokens);
            Assert.True(generated >= 8 * Tokens, $"decoder-a reports {generated} generated tokens");
            Assert.Contains("process_cpu_seconds_total", metrics, StringComparison.Ordinal);
            await client.StopAsync(Ct);
        }
        finally
        {
            foreach (var p in processes)
            {
                try { if (!p.HasExited) p.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
                p.Dispose();
            }
        }
    }
}
