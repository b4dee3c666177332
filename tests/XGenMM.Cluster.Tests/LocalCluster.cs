using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.IO.Hashing;
using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using XGenMM.Cluster.Abstractions;
using XGenMM.Cluster.Abstractions.Telemetry;
using XGenMM.ServiceDefaults;

using static XGenMM.Cluster.Tests.ChildProcesses;

namespace XGenMM.Cluster.Tests;

/// <summary>
/// A whole cluster in processes on loopback, as deploy/local/cluster.sh starts one: redis-server (membership and tenant
/// storage, persisted to a temporary folder so that a restarted redis has its data back), silo processes and a
/// Cluster-mode gateway process; this test process talks to the gateway over HTTP and reads membership as an Orleans
/// client. Membership probes are fast (1 s, 2 missed) so that a death is declared within seconds.
/// </summary>
internal sealed class LocalCluster : IAsyncDisposable
{
    public static readonly TimeSpan ProbeTimeout = TimeSpan.FromSeconds(1);
    public const int MissedProbes = 2;
    public const string ModelId = "xgenmm-test";

    private readonly string _dir = Directory.CreateTempSubdirectory("xgenmm-faults-").FullName;
    private readonly List<Process> _processes = [];
    private readonly Dictionary<string, Process> _silos = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _siloPorts = new(StringComparer.Ordinal);
    private Process? _redis;
    private IHost? _client;

    public int RedisPort { get; } = FreePort();
    public int GatewayPort { get; } = FreePort();
    public string ClusterId { get; } = "faults-" + Guid.NewGuid().ToString("N")[..8];
    public string ApiKey { get; } = "xg-test-" + Guid.NewGuid().ToString("N");
    public ConcurrentQueue<string> GatewayLog { get; } = new();
    /// <summary>What each silo wrote (stdout and stderr), by name.</summary>
    public Dictionary<string, ConcurrentQueue<string>> SiloLogs { get; } = new(StringComparer.Ordinal);
    public HttpClient Http { get; } = new() { Timeout = TimeSpan.FromSeconds(180) };
    public Process Gateway { get; private set; } = null!;
    public IClusterClient Client => _client!.Services.GetRequiredService<IClusterClient>();

    private string Redis => $"127.0.0.1:{RedisPort}";

    /// <summary>Starts redis, the silos (name, roles, extra settings) and the gateway, and waits until the gateway is
    /// ready with <paramref name="decoders"/> decoders.</summary>
    /// <remarks>With <paramref name="redisAfter"/> the silos and the gateway start first and redis that much later, as
    /// pods may come up in a cluster.</remarks>
    public static async Task<LocalCluster> StartAsync((string Name, string Roles, Dictionary<string, string>? Settings)[] silos, int decoders,
        Dictionary<string, string>? gatewaySettings, CancellationToken cancellationToken, TimeSpan? redisAfter = null)
    {
        var cluster = new LocalCluster();
        try
        {
            if (redisAfter is null) cluster.StartRedis();
            foreach (var (name, roles, settings) in silos) cluster.StartSilo(name, roles, settings);
            cluster.StartGateway(gatewaySettings);
            if (redisAfter is { } late)
            {
                await Task.Delay(late, cancellationToken);
                cluster.AssertRunning();
                cluster.StartRedis();
            }
            var config = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
            {
                ["Cluster:Clustering"] = "Redis", ["Cluster:RedisConnectionString"] = cluster.Redis, ["Cluster:ClusterId"] = cluster.ClusterId,
            }).Build();
            cluster._client = Host.CreateDefaultBuilder()
                .ConfigureLogging(l => l.SetMinimumLevel(LogLevel.Error))
                .UseOrleansClient(c => c.UseXGenMMClustering(config)).Build();
            await cluster._client.StartAsync(cancellationToken);
            await cluster.WaitReadyAsync(decoders, TimeSpan.FromSeconds(150), cancellationToken);
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }

    private void StartRedis()
    {
        string server = File.Exists("/usr/bin/redis-server") ? "/usr/bin/redis-server"
            : throw new InvalidOperationException("redis-server is not installed; ./test.sh installs it (build/install-test-deps.sh).");
        // Persisted on every write: a redis that comes back has the membership table, as a production store would.
        _redis = Start(server, $"--port {RedisPort} --bind 127.0.0.1 --dir {_dir} --appendonly yes --appendfsync always --save \"\"", new());
        _processes.Add(_redis);
    }

    private void StartSilo(string name, string roles, Dictionary<string, string>? settings)
    {
        _siloPorts[name] = FreePort();
        var environment = Common();
        environment["Silo__Roles"] = roles;
        environment["Silo__HttpPort"] = _siloPorts[name].ToString(CultureInfo.InvariantCulture);
        environment["Silo__DrainTimeoutSeconds"] = "2";
        environment["Cluster__SiloPort"] = FreePort().ToString(CultureInfo.InvariantCulture);
        environment["Cluster__GatewayPort"] = FreePort().ToString(CultureInfo.InvariantCulture);
        environment["Cluster__SiloName"] = name;
        environment["Cluster__Membership__ProbeTimeout"] = ProbeTimeout.ToString("c", CultureInfo.InvariantCulture);
        environment["Cluster__Membership__NumMissedProbesLimit"] = MissedProbes.ToString(CultureInfo.InvariantCulture);
        environment["Engine__Decode__MaxSequenceLength"] = "1024";
        environment["Engine__Decode__KvCacheBytes"] = "1073741824";
        foreach (var (k, v) in settings ?? []) environment[k] = v;
        SiloLogs[name] = new ConcurrentQueue<string>();
        _silos[name] = Start("dotnet", SiloDll(), environment, SiloLogs[name]);
        _processes.Add(_silos[name]);
    }

    private void StartGateway(Dictionary<string, string>? settings)
    {
        string hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(ApiKey)));
        string tenants = Path.Combine(_dir, "tenants.json");
        File.WriteAllText(tenants, """{"tenants":[{"id":"faults","keySha256":["HASH"],"limits":{"requestsPerMinute":100000,"tokensPerMinute":100000000,"concurrentStreams":64}}]}"""
            .Replace("HASH", hash, StringComparison.Ordinal));
        var environment = Common();
        environment["ASPNETCORE_URLS"] = $"http://127.0.0.1:{GatewayPort}";
        environment["Tenants__File"] = tenants;
        environment["Gateway__ModelId"] = ModelId;
        // Routing and recovery are under test here, not shedding.
        environment["Cluster__Admission__TtftTargetSeconds"] = "0";
        environment["Cluster__Deadlines__ViewPoll"] = "00:00:00.500";
        foreach (var (k, v) in settings ?? []) environment[k] = v;
        Gateway = Start("dotnet", GatewayDll(), environment, GatewayLog);
        _processes.Add(Gateway);
    }

    private Dictionary<string, string> Common() => new()
    {
        ["Model__Path"] = Fixtures.GoldenTinyAnyRes,
        ["Cluster__Clustering"] = "Redis",
        ["Cluster__RedisConnectionString"] = Redis,
        ["Cluster__ClusterId"] = ClusterId,
        ["Logging__LogLevel__XGenMM"] = "Information",
    };

    public Process Silo(string name) => _silos[name];

    public void KillSilo(string name) => _silos[name].Kill(); // SIGKILL

    public void KillRedis() => _redis!.Kill();

    public void RestartRedis()
    {
        _redis!.WaitForExit(5000);
        StartRedis();
    }

    public IEnumerable<Process> Processes => _processes;

    /// <summary>The gateway's /readyz: its status code and decoder count (-1 when it names none).</summary>
    public async Task<(HttpStatusCode Status, int Decoders)> ReadyzAsync(CancellationToken cancellationToken)
    {
        using var response = await Http.GetAsync(new Uri($"http://127.0.0.1:{GatewayPort}/readyz"), cancellationToken);
        string body = await response.Content.ReadAsStringAsync(cancellationToken);
        using var json = JsonDocument.Parse(body);
        return (response.StatusCode, json.RootElement.TryGetProperty("decoders", out var d) ? d.GetInt32() : -1);
    }

    /// <summary>Fails, with the end of what the process wrote, when one of the cluster's processes has exited.</summary>
    private void AssertRunning()
    {
        foreach (var p in _processes.Where(p => p.HasExited))
        {
            var log = ReferenceEquals(p, Gateway) ? GatewayLog : SiloLogs.FirstOrDefault(s => ReferenceEquals(_silos[s.Key], p)).Value;
            string tail = log is null ? "" : "\n" + string.Join('\n', log.TakeLast(25));
            Assert.Fail($"a process exited early with {p.ExitCode}: {p.StartInfo.FileName} {p.StartInfo.Arguments}{tail}");
        }
    }

    private async Task WaitReadyAsync(int decoders, TimeSpan limit, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            AssertRunning();
            Assert.True(clock.Elapsed < limit, $"the cluster was not ready in {limit.TotalSeconds} s");
            try
            {
                if (await ReadyzAsync(cancellationToken) is (HttpStatusCode.OK, var n) && n == decoders)
                {
                    bool siloesReady = true;
                    foreach (var port in _siloPorts.Values)
                    {
                        using var silo = await Http.GetAsync(new Uri($"http://127.0.0.1:{port}/readyz"), cancellationToken);
                        siloesReady &= silo.StatusCode == HttpStatusCode.OK;
                    }
                    if (siloesReady) return;
                }
            }
            catch (HttpRequestException)
            {
            }
            await Task.Delay(250, cancellationToken);
        }
    }

    /// <summary>A metric from one silo's /metrics, summed over its label sets (0 when the silo does not export it).</summary>
    public async Task<double> SiloMetricAsync(string silo, string metric, CancellationToken cancellationToken)
    {
        string text = await Http.GetStringAsync(new Uri($"http://127.0.0.1:{_siloPorts[silo]}/metrics"), cancellationToken);
        double sum = 0;
        foreach (var line in text.Split('\n'))
        {
            if (!line.StartsWith(metric, StringComparison.Ordinal) || line.Length == metric.Length || line[metric.Length] is not (' ' or '{')) continue;
            sum += double.Parse(line[(line.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture);
        }
        return sum;
    }

    /// <summary>Waits until the named vision silos together have been asked for <paramref name="images"/> encodes: the
    /// requests are past admission and inside their vision call (a fixed wait is not enough on a loaded machine).</summary>
    public async Task WaitForEncodesAsync(string[] silos, int images, TimeSpan limit, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            double asked = 0;
            foreach (var silo in silos) asked += await SiloMetricAsync(silo, MetricNames.MmCacheQueries, cancellationToken);
            if (asked >= images) return;
            Assert.True(clock.Elapsed < limit, $"the vision silos were asked for {asked} of {images} encodes in {limit.TotalSeconds} s");
            await Task.Delay(100, cancellationToken);
        }
    }

    /// <summary>The active silos' names as one silo's membership sees them (read through the Orleans client).</summary>
    public async Task<string[]> ActiveSilosAsync(CancellationToken cancellationToken)
    {
        using var call = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        call.CancelAfter(TimeSpan.FromSeconds(2));
        var view = await Client.GetGrain<IClusterViewGrain>(0).Read(call.Token);
        return [.. view.Silos.Select(s => s.Name)];
    }

    /// <summary>A streamed chat completion and what came of it.</summary>
    public async Task<ChatOutcome> ChatAsync(byte[]? image, string question, int maxTokens, CancellationToken cancellationToken)
    {
        var content = new List<object>();
        if (image is not null) content.Add(new { type = "image_url", image_url = new { url = "data:image/png;base64," + Convert.ToBase64String(image) } });
        content.Add(new { type = "text", text = question });
        var body = JsonSerializer.Serialize(new
        {
            model = ModelId,
            messages = new[] { new { role = "user", content } },
            max_tokens = maxTokens,
            stream = true,
            temperature = 0,
        });
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri($"http://127.0.0.1:{GatewayPort}/v1/chat/completions"))
        {
            Content = new StringContent(body, Encoding.UTF8, "application/json"),
        };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", ApiKey);
        var clock = Stopwatch.StartNew();
        using var response = await Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        double? retryAfter = response.Headers.RetryAfter?.Delta?.TotalSeconds;
        if (response.StatusCode != HttpStatusCode.OK)
        {
            string error = await response.Content.ReadAsStringAsync(cancellationToken);
            return new ChatOutcome(response.StatusCode, ErrorCode(error), retryAfter, "", null, false, clock.Elapsed);
        }
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancellationToken));
        var text = new StringBuilder();
        string? finish = null, errorCode = null;
        bool done = false;
        while (await reader.ReadLineAsync(cancellationToken) is { } line)
        {
            if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
            string data = line[6..];
            if (data == "[DONE]") { done = true; break; }
            using var json = JsonDocument.Parse(data);
            if (json.RootElement.TryGetProperty("error", out _)) { errorCode = ErrorCode(data); continue; }
            foreach (var choice in json.RootElement.GetProperty("choices").EnumerateArray())
            {
                if (choice.TryGetProperty("delta", out var delta) && delta.TryGetProperty("content", out var c)) text.Append(c.GetString());
                if (choice.TryGetProperty("finish_reason", out var f) && f.ValueKind == JsonValueKind.String) finish = f.GetString();
            }
        }
        return new ChatOutcome(HttpStatusCode.OK, errorCode, retryAfter, text.ToString(), finish, done, clock.Elapsed);
    }

    private static string? ErrorCode(string body)
    {
        try
        {
            using var json = JsonDocument.Parse(body);
            return json.RootElement.GetProperty("error").GetProperty("code").GetString();
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            return null;
        }
    }

    /// <summary>The fixture's PNG with a text chunk that makes it a different image to the cluster (its own content key
    /// and vision grain) while decoding to the same pixels.</summary>
    public static byte[] DistinctImage(int n)
    {
        byte[] png = File.ReadAllBytes(Path.Combine(Fixtures.GoldenTinyAnyRes, "synthetic_1000x300.png"));
        const int AfterHeader = 8 + 25; // signature, then IHDR (length 4, type 4, 13 bytes, CRC 4)
        byte[] data = Encoding.ASCII.GetBytes("Comment\0image " + n.ToString(CultureInfo.InvariantCulture));
        var chunk = new byte[12 + data.Length];
        BinaryPrimitives.WriteInt32BigEndian(chunk, data.Length);
        Encoding.ASCII.GetBytes("tEXt").CopyTo(chunk, 4);
        data.CopyTo(chunk, 8);
        BinaryPrimitives.WriteUInt32BigEndian(chunk.AsSpan(8 + data.Length), Crc32.HashToUInt32(chunk.AsSpan(4, 4 + data.Length)));
        return [.. png.AsSpan(0, AfterHeader), .. chunk, .. png.AsSpan(AfterHeader)];
    }

    public async ValueTask DisposeAsync()
    {
        if (_client is not null)
        {
            try
            {
                using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                await _client.StopAsync(stop.Token);
            }
            catch (OperationCanceledException)
            {
            }
            _client.Dispose();
        }
        foreach (var p in _processes)
        {
            try { if (!p.HasExited) p.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
            p.WaitForExit(5000);
            p.Dispose();
        }
        Http.Dispose();
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}

/// <param name="Status">The HTTP status (200 once streaming started).</param>
/// <param name="ErrorCode">The OpenAI error code of a refusal or of an SSE error event.</param>
/// <param name="Done">Whether the stream ended with <c>data: [DONE]</c>.</param>
internal sealed record ChatOutcome(HttpStatusCode Status, string? ErrorCode, double? RetryAfterSeconds, string Text, string? FinishReason, bool Done, TimeSpan Elapsed)
{
    public bool Completed => Status == HttpStatusCode.OK && ErrorCode is null && FinishReason is not null && Done;
}
