using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using XGenMM.Cluster.Abstractions.Telemetry;

namespace XGenMM.Gateway.Tests;

/// <summary>
/// The vLLM-style series a Prometheus user expects, scraped from the real /metrics after real requests: model_name on
/// request-level metrics, protocol on histograms, prefix-cache queries beside hits, preemptions, per-request prompt and
/// generation lengths, prefill and decode times.
/// </summary>
[Collection(GatewayTests.Name)]
public sealed class MetricsTests(GatewayFixture gateway)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private async Task<string> ScrapeAsync()
    {
        using var http = gateway.Client();
        return await http.GetStringAsync("/metrics", Ct);
    }

    private (string, string)[] Http => [("model_name", gateway.ModelId), ("protocol", "http")];

    [Fact(Timeout = 120_000)]
    public async Task A_finished_request_is_recorded_in_the_vllm_style_series_with_model_name_and_protocol()
    {
        string before = await ScrapeAsync();
        using var alpha = gateway.Client(GatewayFixture.AlphaKey);
        var body = new JsonObject
        {
            ["model"] = gateway.ModelId,
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Count to ten, slowly." }),
            ["max_tokens"] = 7,
            ["ignore_eos"] = true,
            ["temperature"] = 0,
        };
        JsonNode usage = null!;
        int cached = 0;
        for (int i = 0; i < 2; i++) // the second one finds the first one's prompt in the prefix cache
        {
            using var response = await alpha.PostAsJsonAsync("/v1/chat/completions", body, Ct);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            usage = JsonNode.Parse(await response.Content.ReadAsStringAsync(Ct))!["usage"]!;
            cached += (int)usage["prompt_tokens_details"]!["cached_tokens"]!;
        }
        string after = await ScrapeAsync();
        double Delta(string name, params (string, string)[] labels) => PrometheusSamples.Sum(after, name, labels) - PrometheusSamples.Sum(before, name, labels);
        int prompt = (int)usage["prompt_tokens"]!;

        // Per-request histograms: one observation per request, labelled by model and protocol.
        foreach (var histogram in new[] { MetricNames.TimeToFirstToken, MetricNames.EndToEndLatency, MetricNames.QueueTime, MetricNames.PrefillTime,
                     MetricNames.DecodeTime, MetricNames.RequestPromptTokens, MetricNames.RequestGenerationTokens })
            Assert.True(Delta(histogram + "_count", Http) == 2, $"{histogram}_count{{model_name,protocol=\"http\"}} grew by {Delta(histogram + "_count", Http)}");
        Assert.Equal(2 * prompt, Delta(MetricNames.RequestPromptTokens + "_sum", Http));
        Assert.Equal(2 * 7, Delta(MetricNames.RequestGenerationTokens + "_sum", Http));
        Assert.Equal(2, Delta(MetricNames.RequestGenerationTokens + "_bucket", [.. Http, ("le", "10")]));
        Assert.Equal(0, Delta(MetricNames.RequestGenerationTokens + "_bucket", [.. Http, ("le", "5")]));
        Assert.True(Delta(MetricNames.DecodeTime + "_sum", Http) > 0, "decoding 7 tokens takes time");
        Assert.True(Delta(MetricNames.InterTokenLatency + "_count", Http) >= 2 * 6);

        // Prefix cache: queries are every prompt token, hits the cached ones (the second request reuses the first's prompt).
        var model = ("model_name", gateway.ModelId);
        Assert.Equal(2 * prompt, Delta(MetricNames.PrefixCacheQueries, model));
        double hits = Delta(MetricNames.PrefixCacheHits, model);
        Assert.Equal(cached, hits);
        Assert.InRange(hits, 1, 2 * prompt);

        // Counters by tenant carry model_name too.
        Assert.Equal(2, Delta(MetricNames.RequestSuccess, ("tenant", "alpha"), ("finished_reason", "length"), model));
        Assert.Equal(2 * 7, Delta(MetricNames.GenerationTokens, ("tenant", "alpha"), model));
        Assert.Equal(2 * prompt, Delta(MetricNames.PromptTokens, ("tenant", "alpha"), model));

        // Every request-level series has model_name; the queue time histogram has its documented protocol label.
        foreach (var name in new[] { MetricNames.TimeToFirstToken + "_count", MetricNames.InterTokenLatency + "_count", MetricNames.EndToEndLatency + "_count",
                     MetricNames.QueueTime + "_count", MetricNames.PromptTokens, MetricNames.GenerationTokens, MetricNames.ImageTokens, MetricNames.RequestSuccess,
                     MetricNames.PrefixCacheQueries, MetricNames.PrefixCacheHits })
            Assert.All(PrometheusSamples.Series(after, name), s => Assert.Equal(gateway.ModelId, s.Labels["model_name"]));
        Assert.All(PrometheusSamples.Series(after, MetricNames.QueueTime + "_count"), s => Assert.Contains(s.Labels["protocol"], new[] { "http", "signalr" }));
    }

    [Fact(Timeout = 60_000)]
    public async Task Preemptions_are_exported_per_decoder_from_the_engine_and_are_zero_while_it_never_preempts()
    {
        await gateway.HttpAnswerAsync("Hello?", maxTokens: 2);
        var series = PrometheusSamples.Series(await ScrapeAsync(), MetricNames.NumPreemptions);
        var cpu = Assert.Single(series, s => s.Labels.TryGetValue("device", out var d) && d == "cpu");
        Assert.Equal(0, cpu.Value);
    }

    [Fact(Timeout = 60_000)]
    public async Task The_decoders_forward_passes_are_counted_with_their_time_rows_and_prompt_positions()
    {
        const string Device = "{device=\"cpu\"}";
        string[] names = [MetricNames.DecoderPasses, MetricNames.DecoderPassSeconds, MetricNames.DecoderPassRows, MetricNames.DecoderPassPrefillTokens,
            MetricNames.DecoderProtectedSteps, MetricNames.DecoderProtectedRowLimit, MetricNames.DecoderHeldRows];
        string before = await ScrapeAsync();
        using (var http = gateway.Client(GatewayFixture.AlphaKey))
        {
            var body = new JsonObject
            {
                ["model"] = gateway.ModelId,
                ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Count the passes, please." }),
                ["max_tokens"] = 6,
                ["ignore_eos"] = true,
            };
            using var response = await http.PostAsJsonAsync("/v1/chat/completions", body, Ct);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        string after = await ScrapeAsync();
        var delta = names.ToDictionary(n => n, n => PrometheusSamples.Value(after, n + Device) - PrometheusSamples.Value(before, n + Device));
        // Six tokens: the pass that ends the prefill gives the first, five decode passes (one row each at least) the rest.
        Assert.True(delta[MetricNames.DecoderPasses] >= 6, $"passes +{delta[MetricNames.DecoderPasses]}");
        Assert.True(delta[MetricNames.DecoderPassRows] >= 5, $"rows +{delta[MetricNames.DecoderPassRows]}");
        Assert.True(delta[MetricNames.DecoderPassPrefillTokens] >= 1, $"prompt positions +{delta[MetricNames.DecoderPassPrefillTokens]}");
        Assert.True(delta[MetricNames.DecoderPassSeconds] > 0, $"seconds +{delta[MetricNames.DecoderPassSeconds]}");
        // One tenant alone: no light tenant to protect, and the series are exported all the same.
        Assert.Equal(0, delta[MetricNames.DecoderProtectedSteps]);
        Assert.Equal(0, delta[MetricNames.DecoderProtectedRowLimit]);
        Assert.Equal(0, delta[MetricNames.DecoderHeldRows]);
        Assert.Contains(MetricNames.DecoderProtectedSteps + Device, after, StringComparison.Ordinal);
    }
}
