using System.Xml.Linq;
using XGenMM.LoadTest.Cli;
using XGenMM.LoadTest.Reporting;

namespace XGenMM.LoadTest.Tests;

public sealed class CommandLineTests
{
    [Fact]
    public void Shared_flags_apply_to_every_experiment_and_an_experiments_own_flags_win()
    {
        var r = CommandLine.Parse(["--url", "http://h:1", "--api-key", "k", "--requests", "10", "--concurrency", "1,2",
            "--experiment", "a", "--concurrency", "4,8", "--images", "2", "--image-reuse", "repeated",
            "--experiment", "b", "--mode", "open", "--rate", "0.5,1", "--burstiness", "0.5", "--tenant", "x:kx:3", "--tenant", "y:ky",
            "--slo-ttft-ms", "250", "--slo-tpot-ms", "40"]);
        Assert.Equal(2, r.Experiments.Count);
        var (a, b) = (r.Experiments[0], r.Experiments[1]);
        Assert.Equal(new Uri("http://h:1/"), a.Url);
        Assert.Equal([4, 8], a.Concurrency);
        Assert.Equal((10, 2, ImageReuse.Repeated), (a.Requests, a.ImagesPerRequest, a.ImageReuse));
        Assert.Equal("k", Assert.Single(a.Tenants).ApiKey);
        Assert.Equal((LoadMode.Open, 0.5), (b.Mode, b.Burstiness));
        Assert.Equal([0.5, 1.0], b.Rates);
        Assert.Equal([("x", "kx", 3.0), ("y", "ky", 1.0)], b.Tenants.Select(t => (t.Label, t.ApiKey, t.Share)));
        Assert.Equal(new Slo(250, 40, null), b.Slo);
        Assert.Equal(0, b.ImagesPerRequest);
    }

    [Fact]
    public void A_plan_file_holds_shared_flags_and_named_experiments()
    {
        var plan = CommandLine.ReadPlan("""
            # shared
            --url http://x:5 --api-key k --requests 20
            text: --mode closed --concurrency 1,2,4   # a comment
            vision: --images 1 --note "cache on, repeated images" --image-reuse repeated
            """).ToList();
        Assert.Equal([null, "text", "vision"], plan.Select(p => p.Name));
        Assert.Equal(["--images", "1", "--note", "cache on, repeated images", "--image-reuse", "repeated"], plan[2].Flags);
    }

    [Theory]
    [InlineData("--requests", "0")]
    [InlineData("--burstiness", "0")]
    [InlineData("--protocol", "grpc")]
    [InlineData("--input-range", "1.5")]
    public async Task A_bad_command_line_exits_with_2_and_says_why(string flag, string value)
    {
        var error = new StringWriter();
        int rc = await LoadTestProgram.RunAsync(["--api-key", "k", flag, value], TextWriter.Null, error, CancellationToken.None);
        Assert.Equal(2, rc);
        Assert.Contains(flag, error.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Api_keys_are_masked_in_the_recorded_command_line()
    {
        Assert.Equal(["--api-key", "***", "--tenant", "a:***:2", "--note", "\"two words\""],
            LoadTestProgram.MaskKeys(["--api-key", "secret", "--tenant", "a:secret2:2", "--note", "two words"]));
    }

    [Fact]
    public void Charts_are_well_formed_svg_with_a_line_per_series()
    {
        string svg = SvgChart.Line("t <&>", "x", "y",
        [
            new ChartSeries("p50", [(1, 10), (2, 20), (4, 45), (8, 200)]),
            new ChartSeries("p99", [(1, 30), (2, 60), (4, 400), (8, 5000)]),
            new ChartSeries("empty", []),
        ]);
        var doc = XDocument.Parse(svg);
        XNamespace ns = "http://www.w3.org/2000/svg";
        Assert.Equal(2, doc.Descendants(ns + "polyline").Count());
        Assert.Equal(8, doc.Descendants(ns + "circle").Count());
        Assert.Contains("(log scale)", svg, StringComparison.Ordinal);
        Assert.Equal(5, SvgChart.NiceStep(4.2));
        Assert.Equal(20, SvgChart.NiceStep(13));
    }
}
