using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using XGenMM.Cluster.Abstractions.Telemetry;
using XGenMM.Deploy.Tests.Infrastructure;
using XGenMM.Testing;

namespace XGenMM.Deploy.Tests;

/// <summary>
/// The locally built images run as a cluster on a podman network this test creates: Redis (membership), one CPU silo
/// with both roles and one gateway in Cluster mode, both reading a checkpoint mounted read-only from the host, on
/// read-only root filesystems. The silo joins the cluster over the network (the gateway's /readyz counts its decoder),
/// and the gateway, published on 127.0.0.1 only, answers a chat completion with an image. Containers, network and files
/// are removed whatever happens. Where containers cannot run, the test fails with podman's own message.
/// </summary>
[Collection(LocalImagesDefinition.Name)]
[Trait("Category", "E2E")]
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class ContainerClusterTests(LocalImages images)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>From `podman run` to /readyz on a quiet 2-core machine: a few seconds; generous for a loaded one.</summary>
    private static readonly TimeSpan ReadyLimit = TimeSpan.FromSeconds(180);

    [Fact(Timeout = 420_000)]
    public async Task A_silo_container_joins_the_gateway_container_over_a_podman_network_and_the_gateway_answers_with_an_image()
    {
        string id = Guid.NewGuid().ToString("N")[..8];
        string network = $"xgenmm-e2e-{id}";
        string files = Directory.CreateTempSubdirectory("xgenmm-e2e-").FullName;
        var containers = new List<string>();
        bool networkCreated = false;
        var output = TestContext.Current.TestOutputHelper;
        try
        {
            // The checkpoint: a copy of the committed xgenmm-nano under a name of its own, so the model id the gateway
            // serves (the directory's name) shows which directory was read.
            string modelName = $"nano-mounted-{id}";
            string model = Path.Combine(files, modelName);
            Directory.CreateDirectory(model);
            foreach (var file in Directory.GetFiles(Repo.File("models", "xgenmm-nano")))
                File.Copy(file, Path.Combine(model, Path.GetFileName(file)));
            string apiKey = "xg-e2e-" + Convert.ToHexString(RandomNumberGenerator.GetBytes(16)).ToLowerInvariant();
            string hash = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(apiKey))).ToLowerInvariant();
            File.WriteAllText(Path.Combine(files, "tenants.json"), $$"""{"tenants":[{"id":"e2e","keySha256":["{{hash}}"]}]}""");
            // The containers run as uid 1654: the mounted files must be readable by others.
            MakeReadableByAll(files);

            string subnet = await CreateNetworkAsync(network);
            networkCreated = true;
            string Ip(int host) => subnet + host.ToString(CultureInfo.InvariantCulture);
            string redisIp = Ip(10), siloIp = Ip(11), gatewayIp = Ip(12);
            string[] cluster =
            [
                "-e", "Cluster__Clustering=Redis", "-e", $"Cluster__RedisConnectionString={redisIp}:6379", "-e", $"Cluster__ClusterId=e2e-{id}",
                "-v", $"{model}:/models/{modelName}:ro", "-e", $"Model__Path=/models/{modelName}",
            ];

            containers.Add(await Podman.RunAsync("run", "-d", "--name", $"xgenmm-e2e-redis-{id}", "--network", network, "--ip", redisIp, Podman.RedisImage));

            int siloPort = FreePort();
            var siloStart = Stopwatch.StartNew();
            containers.Add(await Podman.RunAsync(
            [
                "run", "-d", "--name", $"xgenmm-e2e-silo-{id}", "--network", network, "--ip", siloIp, "--read-only", "--tmpfs", "/tmp",
                "-p", $"127.0.0.1:{siloPort}:8080", .. cluster,
                "-e", "Silo__Roles=vision,decoder", "-e", $"Cluster__AdvertisedIP={siloIp}",
                "-e", "Engine__Decode__MaxSequenceLength=1024", "-e", "Engine__Decode__KvCacheBytes=268435456",
                Podman.SiloImage,
            ]));
            int gatewayPort = FreePort();
            var gatewayStart = Stopwatch.StartNew();
            containers.Add(await Podman.RunAsync(
            [
                "run", "-d", "--name", $"xgenmm-e2e-gateway-{id}", "--network", network, "--ip", gatewayIp, "--read-only", "--tmpfs", "/tmp",
                "-p", $"127.0.0.1:{gatewayPort}:8080", .. cluster,
                "-v", $"{Path.Combine(files, "tenants.json")}:/config/tenants.json:ro", "-e", "Tenants__File=/config/tenants.json",
                Podman.GatewayImage,
            ]));

            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(120) };
            var silo = new Uri($"http://127.0.0.1:{siloPort}/");
            var gateway = new Uri($"http://127.0.0.1:{gatewayPort}/");

            // (b) The silo is ready, and the gateway sees its decoder through the cluster (membership in Redis, Orleans
            // traffic between the containers' addresses).
            await WaitForAsync(http, new Uri(silo, "readyz"), containers, _ => true);
            var siloReady = siloStart.Elapsed;
            var readiness = await WaitForAsync(http, new Uri(gateway, "readyz"), containers, body => body["decoders"]?.GetValue<int>() >= 1);
            var gatewayReady = gatewayStart.Elapsed;
            Assert.Equal("ready", readiness["status"]?.GetValue<string>());
            Assert.Equal(1, readiness["decoders"]?.GetValue<int>());

            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
            var models = JsonNode.Parse(await http.GetStringAsync(new Uri(gateway, "v1/models"), Ct))!;
            Assert.Equal(modelName, models["data"]![0]!["id"]!.GetValue<string>());

            // (a) A chat completion with an image, through the published port.
            byte[] png = File.ReadAllBytes(Path.Combine(Fixtures.GoldenTinyAnyRes, "synthetic_1000x300.png"));
            var first = Stopwatch.StartNew();
            var withImage = await ChatAsync(http, gateway, modelName, "Describe the image in one sentence.", png);
            var firstLatency = first.Elapsed;
            var textOnly = await ChatAsync(http, gateway, modelName, "Describe the image in one sentence.", image: null);
            string answer = withImage["choices"]![0]!["message"]!["content"]!.GetValue<string>();
            Assert.False(string.IsNullOrWhiteSpace(answer), "the answer is empty");
            Assert.Contains(withImage["choices"]![0]!["finish_reason"]!.GetValue<string>(), new[] { "stop", "length" });
            int imagePromptTokens = withImage["usage"]!["prompt_tokens"]!.GetValue<int>();
            int textPromptTokens = textOnly["usage"]!["prompt_tokens"]!.GetValue<int>();
            // The image became the vision silo's tokens in the prompt (the anyres tiles' query tokens).
            Assert.True(imagePromptTokens - textPromptTokens >= 32, $"the image added {imagePromptTokens - textPromptTokens} prompt tokens");

            // The silo's own metrics (its HTTP port, published on loopback) show the decoder's work.
            string metrics = await http.GetStringAsync(new Uri(silo, "metrics"), Ct);
            Assert.True(PrometheusSamples.Sum(metrics, MetricNames.DecoderGeneratedTokens) >= 1, "the silo container reports no generated tokens");

            string timings = string.Create(CultureInfo.InvariantCulture,
                $"images build (fixture) {images.BuildTime.TotalSeconds:F1} s; silo start to /readyz {siloReady.TotalSeconds:F1} s; gateway start to /readyz with 1 decoder {gatewayReady.TotalSeconds:F1} s; first chat completion with an image {firstLatency.TotalMilliseconds:F0} ms ({withImage["usage"]!["completion_tokens"]} tokens); answer: {answer}");
            output?.WriteLine(timings);
            File.WriteAllText(Repo.File(".tools", "images", "container-cluster-timings.txt"), timings + "\n");
        }
        catch (Exception e) when (containers.Count > 0)
        {
            // Whatever failed, the containers' own logs say why.
            var logs = new StringBuilder();
            foreach (var container in containers)
            {
                var log = await Podman.TryRunAsync(TimeSpan.FromSeconds(20), "logs", "--tail", "40", container);
                logs.Append(CultureInfo.InvariantCulture, $"\n--- {container[..12]} ---\n{log.StdOut}{log.StdErr}");
            }
            output?.WriteLine(logs.ToString());
            throw new InvalidOperationException($"{e.Message}\ncontainer logs:{logs}", e);
        }
        finally
        {
            foreach (var container in containers)
                await Podman.TryRunAsync(TimeSpan.FromSeconds(30), "rm", "-f", "-t", "2", container);
            if (networkCreated) await Podman.TryRunAsync(TimeSpan.FromSeconds(30), "network", "rm", "-f", network);
            Directory.Delete(files, recursive: true);
        }
    }

    /// <summary>Creates the network on a /24 in 10.0.0.0/8 that no other network uses; returns its prefix ("10.a.b.").</summary>
    private static async Task<string> CreateNetworkAsync(string name)
    {
        string last = "";
        for (int attempt = 0; attempt < 8; attempt++)
        {
            string prefix = $"10.{Random.Shared.Next(100, 250)}.{Random.Shared.Next(0, 255)}.";
            var result = await Podman.TryRunAsync(TimeSpan.FromSeconds(30), "network", "create", "--subnet", prefix + "0/24", name);
            if (result.ExitCode == 0) return prefix;
            last = result.StdErr.Trim();
        }
        throw new InvalidOperationException($"podman could not create a network: {last}");
    }

    /// <summary>Polls until the endpoint answers 200 with a body the condition accepts; fails early when a container stopped.</summary>
    private static async Task<JsonObject> WaitForAsync(HttpClient http, Uri uri, List<string> containers, Func<JsonObject, bool> accept)
    {
        var clock = Stopwatch.StartNew();
        string last = "";
        while (true)
        {
            try
            {
                using var response = await http.GetAsync(uri, Ct);
                last = $"{(int)response.StatusCode} {await response.Content.ReadAsStringAsync(Ct)}";
                if (response.StatusCode == HttpStatusCode.OK && JsonNode.Parse(last[4..]) is JsonObject body && accept(body)) return body;
            }
            catch (HttpRequestException e)
            {
                last = e.Message;
            }
            foreach (var container in containers)
            {
                string state = await Podman.RunAsync("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", container);
                if (!state.StartsWith("running", StringComparison.Ordinal))
                    throw new InvalidOperationException($"container {container[..12]} is {state} while waiting for {uri}");
            }
            if (clock.Elapsed > ReadyLimit) throw new TimeoutException($"{uri} was not ready within {ReadyLimit.TotalSeconds} s; last answer: {last}");
            await Task.Delay(250, Ct);
        }
    }

    private static async Task<JsonObject> ChatAsync(HttpClient http, Uri gateway, string model, string question, byte[]? image)
    {
        var content = new JsonArray { new JsonObject { ["type"] = "text", ["text"] = question } };
        if (image is not null)
            content.Add(new JsonObject { ["type"] = "image_url", ["image_url"] = new JsonObject { ["url"] = "data:image/png;base64," + Convert.ToBase64String(image) } });
        var body = new JsonObject
        {
            ["model"] = model,
            ["messages"] = new JsonArray { new JsonObject { ["role"] = "user", ["content"] = content } },
            ["max_tokens"] = 24,
            ["temperature"] = 0,
        };
        using var response = await http.PostAsync(new Uri(gateway, "v1/chat/completions"), new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json"), Ct);
        string text = await response.Content.ReadAsStringAsync(Ct);
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"chat completion: {(int)response.StatusCode} {text}");
        return JsonNode.Parse(text)!.AsObject();
    }

    private static void MakeReadableByAll(string directory)
    {
        const UnixFileMode Dir = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead
            | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute;
        const UnixFileMode FileMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead;
        File.SetUnixFileMode(directory, Dir);
        foreach (var d in Directory.GetDirectories(directory, "*", SearchOption.AllDirectories)) File.SetUnixFileMode(d, Dir);
        foreach (var f in Directory.GetFiles(directory, "*", SearchOption.AllDirectories)) File.SetUnixFileMode(f, FileMode);
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
