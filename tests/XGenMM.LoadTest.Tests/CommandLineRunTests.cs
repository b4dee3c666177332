using System.Globalization;
using System.Xml.Linq;
using XGenMM.LoadTest.Metrics;
using XGenMM.LoadTest.Reporting;

namespace XGenMM.LoadTest.Tests;

/// <summary>The whole command line against the local cluster: console progress and tables, then the files.</summary>
[Collection(LocalClusterTests.Name)]
[Trait("Category", "E2E")]
public sealed class CommandLineRunTests(LocalClusterFixture cluster)
{
    /// <summary>Four users of a one-stream tenant: three are refused at a time (429, Retry-After 1 s). Honouring it, a
    /// refused user asks again after a second, so 3 s bring at most a few refusals per user; spinning with no pause
    /// (the fallback here) would bring hundreds. The hub's refusals say it in their last line, the HTTP API's in the header.</summary>
    [Theory(Timeout = 60_000)]
    [InlineData("http")]
    [InlineData("signalr")]
    public async Task With_honor_retry_after_a_refused_user_waits_the_refusals_Retry_After(string protocol)
    {
        string dir = Path.Combine(Path.GetTempPath(), "xgenmm-loadtest-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            int rc = await LoadTestProgram.RunAsync(["--url", cluster.BaseAddress.ToString(), "--api-key", LocalClusterFixture.SingleKey,
                "--requests", "100000", "--duration", "3", "--output-tokens", "3", "--warmup", "0", "--concurrency", "4",
                "--honor-retry-after", "--refusal-pause", "0", "--protocol", protocol, "--no-server-metrics", "--quiet", "--out", dir], TextWriter.Null, TextWriter.Null,
                TestContext.Current.CancellationToken);
            Assert.Equal(0, rc);
            var experiment = ReportWriter.Read(Path.Combine(dir, "results.json")).Experiments[0];
            var point = experiment.Points[0];
            int refused = point.ErrorsByStatus.GetValueOrDefault(429);
            Assert.True(refused is >= 3 and <= 4 * 5, $"{refused} refusals of {point.Requests} requests (waiting 1 s after each: 3 to 20)");
            Assert.True(point.Succeeded > 0);
            Assert.Equal("waits its Retry-After (0 s without one)", experiment.Settings["after a 429/503"]);
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [Fact(Timeout = 60_000)]
    public async Task A_run_writes_json_markdown_and_svg_and_the_report_command_merges_runs()
    {
        string dir = Path.Combine(Path.GetTempPath(), "xgenmm-loadtest-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            var console = new StringWriter();
            int rc = await LoadTestProgram.RunAsync(["--url", cluster.BaseAddress.ToString(), "--api-key", LocalClusterFixture.AlphaKey,
                "--requests", "6", "--output-tokens", "3", "--warmup", "1", "--slo-ttft-ms", "60000",
                "--experiment", "closed", "--concurrency", "1,2",
                "--experiment", "open", "--mode", "open", "--rate", "20,40",
                "--out", Path.Combine(dir, "a"), "--run-note", "unit test"], console, console, TestContext.Current.CancellationToken);
            Assert.Equal(0, rc);
            string text = console.ToString();
            Assert.Contains("== closed: closed loop over http", text, StringComparison.Ordinal);
            Assert.Contains("[c=2] 6/6 done, 0 failed", text, StringComparison.Ordinal);
            Assert.Contains("TTFT p50", text, StringComparison.Ordinal);

            var report = ReportWriter.Read(Path.Combine(dir, "a", "results.json"));
            Assert.Equal(["closed", "open"], report.Experiments.Select(e => e.Name));
            Assert.Equal([1.0, 2.0], report.Experiments[0].Points.Select(p => p.X));
            Assert.All(report.Experiments.SelectMany(e => e.Points), p => Assert.Equal((6, 6, 1.0), (p.Succeeded, (int)p.Server!.RequestsSucceeded, p.SloAttainment!.Value)));
            Assert.DoesNotContain(LocalClusterFixture.AlphaKey, File.ReadAllText(Path.Combine(dir, "a", "results.json")), StringComparison.Ordinal);
            Assert.Contains("unit test", report.Notes);
            Assert.True(report.Machine.LogicalCores > 0);

            // Every measured request once (warm-up left out), with its status and timings.
            var rows = File.ReadAllLines(Path.Combine(dir, "a", "requests.csv"));
            Assert.Equal("experiment,point,start_s,tenant,status,error,ttft_ms,e2e_ms,output_tokens", rows[0]);
            Assert.Equal(report.Experiments.Sum(e => e.Points.Sum(p => p.Requests)), rows.Length - 1);
            Assert.All(rows.Skip(1), row =>
            {
                var f = row.Split(',');
                Assert.Equal(("200", "", "3"), (f[4], f[5], f[8]));
                Assert.True(double.Parse(f[2], CultureInfo.InvariantCulture) >= 0 && double.Parse(f[6], CultureInfo.InvariantCulture) > 0);
            });
            var perPoint = rows.Skip(1).GroupBy(r => string.Join(',', r.Split(',')[..2])).ToList();
            Assert.Equal(4, perPoint.Count);
            Assert.All(perPoint, g => Assert.Equal(6, g.Count()));

            string md = File.ReadAllText(Path.Combine(dir, "a", "report.md"));
            Assert.Contains("| c=2 | 6 | 0 |", md, StringComparison.Ordinal);
            Assert.Contains("![closed: latency percentiles vs load](closed-latency.svg)", md, StringComparison.Ordinal);
            foreach (var svg in new[] { "closed-latency.svg", "closed-throughput.svg", "open-latency.svg", "open-throughput.svg" })
                XDocument.Load(Path.Combine(dir, "a", svg));

            // Re-rendering (and merging) from JSON alone: the same experiments, twice over.
            rc = await LoadTestProgram.RunAsync(["report", Path.Combine(dir, "a", "results.json"), Path.Combine(dir, "a", "results.json"),
                "--out", Path.Combine(dir, "b")], TextWriter.Null, TextWriter.Null, TestContext.Current.CancellationToken);
            Assert.Equal(0, rc);
            Assert.Equal(4, ReportWriter.Read(Path.Combine(dir, "b", "results.json")).Experiments.Count);
            Assert.True(File.Exists(Path.Combine(dir, "b", "report.md")));
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }
}
