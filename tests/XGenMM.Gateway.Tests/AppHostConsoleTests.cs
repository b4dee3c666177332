using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace XGenMM.Gateway.Tests;

/// <summary>
/// The README's run command as a person sees it: the real AppHost process (src/XGenMM.AppHost's build output, its own
/// appsettings.json, no test configuration) on a free loopback port. Its console must lead with the banner, not with
/// framework noise, and serving requests must not flood it.
/// </summary>
[Trait("Category", "E2E")]
public sealed partial class AppHostConsoleTests
{
    /// <summary>Lines the console may show before the banner's first line (the issue's budget; about 190 before).</summary>
    private const int MaxLinesBeforeBanner = 20;

    private const int Requests = 5;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact(Timeout = 240_000)]
    public async Task The_banner_comes_first_and_a_successful_request_logs_at_most_one_line()
    {
        await using var host = await AppHostProcess.StartAsync([]);
        var (bannerAt, key) = await host.WaitForBannerAsync(TimeSpan.FromSeconds(180));
        var lines = host.Lines();
        Assert.True(bannerAt <= MaxLinesBeforeBanner,
            $"{bannerAt} lines before the banner (at most {MaxLinesBeforeBanner}):\n{string.Join('\n', lines.Take(bannerAt + 1))}");
        string banner = string.Join('\n', lines.Skip(bannerAt).Take(8));
        Assert.Contains("Local mode", banner, StringComparison.Ordinal);
        Assert.Contains("roles vision,decoder", banner, StringComparison.Ordinal);
        Assert.Contains($"chat page and API: {host.BaseAddress.ToString().TrimEnd('/')}", banner, StringComparison.Ordinal);
        Assert.Contains("about the model: ", banner, StringComparison.Ordinal);

        using var http = new HttpClient { BaseAddress = host.BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
        await host.WaitReadyAsync(http, TimeSpan.FromSeconds(60));
        // Whatever startup still had to say has been said before counting.
        await Task.Delay(TimeSpan.FromSeconds(2), Ct);
        int before = host.Lines().Count;
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        for (int i = 0; i < Requests; i++)
        {
            using var response = await http.PostAsJsonAsync("/v1/chat/completions", new
            {
                model = NanoGatewayFixture.ModelName,
                messages = new[] { new { role = "user", content = "How many shapes are there?" } },
                max_tokens = 8,
            }, Ct);
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"{(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(Ct)}");
        }
        await Task.Delay(TimeSpan.FromSeconds(1), Ct);
        var during = host.Lines().Skip(before).ToList();
        Assert.True(during.Count <= Requests,
            $"{during.Count} console lines for {Requests} successful requests (at most one each):\n{string.Join('\n', during)}");
        Assert.DoesNotContain(host.Lines(), l => l.Contains("fail:", StringComparison.Ordinal) || l.Contains("crit:", StringComparison.Ordinal));
    }

    [Fact(Timeout = 240_000)]
    public async Task With_the_json_formatter_every_console_line_is_a_json_object_and_the_banner_is_one_of_them()
    {
        await using var host = await AppHostProcess.StartAsync(["--Logging:Console:FormatterName=json"]);
        await host.WaitForLineAsync(l => l.Contains("\"EventId\":700", StringComparison.Ordinal), TimeSpan.FromSeconds(180));
        var lines = host.Lines().Where(l => l.Length > 0).ToList();
        var entries = lines.Select(l =>
        {
            try
            {
                return JsonDocument.Parse(l).RootElement.Clone();
            }
            catch (JsonException e)
            {
                Assert.Fail($"not a JSON line ({e.Message}): {l}");
                throw;
            }
        }).ToList();
        var banner = Assert.Single(entries, e => e.GetProperty("EventId").GetInt32() == 700);
        Assert.Equal("Information", banner.GetProperty("LogLevel").GetString());
        var state = banner.GetProperty("State");
        Assert.Equal("Local", state.GetProperty("Mode").GetString());
        Assert.Equal(NanoGatewayFixture.ModelName, state.GetProperty("Model").GetString());
        Assert.Contains(host.BaseAddress.ToString().TrimEnd('/'), state.GetProperty("Addresses").GetString(), StringComparison.Ordinal);
        Assert.StartsWith("xg-", state.GetProperty("DevelopmentApiKey").GetString(), StringComparison.Ordinal);
        Assert.True(lines.IndexOf(lines.Single(l => l.Contains("\"EventId\":700", StringComparison.Ordinal))) <= MaxLinesBeforeBanner);
    }

    /// <summary>The AppHost's build output run with <c>dotnet</c>, its stdout and stderr collected line by line.</summary>
    private sealed partial class AppHostProcess : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly List<string> _lines = [];

        private AppHostProcess(Process process, Uri baseAddress)
        {
            _process = process;
            BaseAddress = baseAddress;
        }

        public Uri BaseAddress { get; }

        public static Task<AppHostProcess> StartAsync(string[] args)
        {
            // The same configuration (Release or Debug) as these tests.
            string configuration = new DirectoryInfo(Path.TrimEndingDirectorySeparator(AppContext.BaseDirectory)).Parent!.Name;
            string output = Path.Combine(NanoGatewayFixture.RepositoryRoot(), "src", "XGenMM.AppHost", "bin", configuration, "net10.0");
            string dll = Path.Combine(output, "XGenMM.AppHost.dll");
            if (!File.Exists(dll)) Assert.Fail($"{dll} is missing: build src/XGenMM.AppHost ({configuration}) first.");
            int port = FreePort();
            var start = new ProcessStartInfo("dotnet")
            {
                WorkingDirectory = output,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            start.ArgumentList.Add(dll);
            start.ArgumentList.Add("--urls");
            start.ArgumentList.Add($"http://127.0.0.1:{port}");
            foreach (var arg in args) start.ArgumentList.Add(arg);
            // Its default configuration: no environment of the test runner's (Development would add its own logging).
            foreach (var name in new[] { "ASPNETCORE_ENVIRONMENT", "DOTNET_ENVIRONMENT", "ASPNETCORE_URLS", "Logging__Console__FormatterName" })
                start.Environment.Remove(name);
            var process = Process.Start(start)!;
            var host = new AppHostProcess(process, new Uri($"http://127.0.0.1:{port}/"));
            process.OutputDataReceived += (_, e) => host.Add(e.Data);
            process.ErrorDataReceived += (_, e) => host.Add(e.Data);
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            return Task.FromResult(host);
        }

        private void Add(string? line)
        {
            if (line is null) return;
            lock (_lines) _lines.Add(line);
        }

        public List<string> Lines()
        {
            lock (_lines) return [.. _lines];
        }

        public async Task<int> WaitForLineAsync(Func<string, bool> match, TimeSpan timeout)
        {
            var clock = Stopwatch.StartNew();
            while (clock.Elapsed < timeout)
            {
                int at = Lines().FindIndex(l => match(l));
                if (at >= 0) return at;
                if (_process.HasExited) Assert.Fail($"The AppHost exited ({_process.ExitCode}):\n{string.Join('\n', Lines())}");
                await Task.Delay(200, Ct);
            }
            Assert.Fail($"No such line within {timeout.TotalSeconds:F0} s:\n{string.Join('\n', Lines())}");
            return -1;
        }

        /// <summary>The index of the banner's first line and the development key it prints.</summary>
        public async Task<(int At, string Key)> WaitForBannerAsync(TimeSpan timeout)
        {
            int keyAt = await WaitForLineAsync(l => l.Contains("development API key (tenant 'dev'): ", StringComparison.Ordinal), timeout);
            var lines = Lines();
            int at = lines.FindIndex(l => l.StartsWith("XGenMM gateway in ", StringComparison.Ordinal));
            Assert.InRange(at, 0, keyAt);
            return (at, KeyPattern().Match(lines[keyAt]).Groups[1].Value);
        }

        public async Task WaitReadyAsync(HttpClient http, TimeSpan timeout)
        {
            var clock = Stopwatch.StartNew();
            while (clock.Elapsed < timeout)
            {
                if (_process.HasExited) Assert.Fail($"The AppHost exited ({_process.ExitCode}):\n{string.Join('\n', Lines())}");
                try
                {
                    using var ready = await http.GetAsync("/readyz", Ct);
                    if (ready.IsSuccessStatusCode) return;
                }
                catch (HttpRequestException)
                {
                    // Not listening yet.
                }
                await Task.Delay(250, Ct);
            }
            Assert.Fail($"/readyz was not 200 within {timeout.TotalSeconds:F0} s.");
        }

        public async ValueTask DisposeAsync()
        {
            if (!_process.HasExited) _process.Kill(entireProcessTree: true);
            using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await _process.WaitForExitAsync(limit.Token);
            _process.Dispose();
        }

        private static int FreePort()
        {
            using var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            return ((IPEndPoint)listener.LocalEndpoint).Port;
        }

        [GeneratedRegex(@"development API key \(tenant 'dev'\): (\S+)")]
        private static partial Regex KeyPattern();
    }
}
