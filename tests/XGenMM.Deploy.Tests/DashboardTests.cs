using XGenMM.Cluster.Abstractions.Telemetry;
using XGenMM.Deploy.Tests.Infrastructure;
using static XGenMM.Deploy.Tests.Infrastructure.Rendered;

namespace XGenMM.Deploy.Tests;

/// <summary>The Grafana dashboard ConfigMap shows what an operator needs, on metrics the hosts export.</summary>
public sealed class DashboardTests
{
    [Fact]
    public async Task The_dashboard_shows_latency_throughput_queues_kv_cache_hits_and_tenant_tokens()
    {
        var r = await Helm.RenderAsync("default");
        var configMap = r.OfKind("ConfigMap").Single(c => Name(c).EndsWith("-dashboard", StringComparison.Ordinal));
        Assert.Equal("1", StringMap(At(configMap, "metadata.labels"))["grafana_dashboard"]);
        var dashboard = JsonNode.Parse(StringMap(At(configMap, "data"))["xgenmm.json"])!.AsObject();
        Assert.False(string.IsNullOrEmpty(Str(dashboard, "uid")));

        var panels = Arr(dashboard, "panels").Where(p => Str(p, "type") != "row").ToList();
        Assert.Equal(panels.Count, panels.Select(p => Int(p, "id")).Distinct().Count());
        var exprs = panels.ToDictionary(p => Str(p, "title")!, p => string.Join('\n', Arr(p, "targets").Select(t => Str(t, "expr"))), StringComparer.Ordinal);

        void Shows(string titleWord, params string[] metrics)
        {
            var panel = exprs.SingleOrDefault(e => e.Key.Contains(titleWord, StringComparison.OrdinalIgnoreCase));
            Assert.True(panel.Key is not null, $"No panel titled with '{titleWord}': {string.Join(", ", exprs.Keys)}");
            foreach (var metric in metrics) Assert.Contains(metric, panel.Value, StringComparison.Ordinal);
        }
        Shows("first token", MetricNames.TimeToFirstToken + "_bucket");
        Shows("inter-token", MetricNames.InterTokenLatency + "_bucket");
        Shows("tokens per second", MetricNames.DecoderGeneratedTokens);
        Shows("queue depth", MetricNames.RequestsWaiting, MetricNames.RequestsRunning);
        Shows("pending images", MetricNames.TokensWaiting, MetricNames.VisionImagesPending);
        Shows("KV cache", MetricNames.KvCacheUsage);
        Shows("cache hit rate", MetricNames.MmCacheHits, MetricNames.MmCacheQueries);
        Shows("Prefix cache", MetricNames.PrefixCacheHitTokens);
        Shows("per tenant", "sum by (tenant)", MetricNames.PromptTokens, MetricNames.GenerationTokens, MetricNames.ImageTokens);
        Shows("Prompt and generation length", MetricNames.RequestPromptTokens + "_bucket", MetricNames.RequestGenerationTokens + "_bucket");
        Shows("Prefill and decode time", MetricNames.PrefillTime + "_bucket", MetricNames.DecodeTime + "_bucket");
        Shows("Prefix reuse hit rate", MetricNames.PrefixCacheHits, MetricNames.PrefixCacheQueries);
        Shows("Preemptions", MetricNames.NumPreemptions);
        Shows("forward pass time", MetricNames.DecoderPassSeconds, MetricNames.DecoderPasses);
        Shows("per pass", MetricNames.DecoderPassRows, MetricNames.DecoderPassPrefillTokens);
        Shows("Tenant isolation", MetricNames.DecoderProtectedSteps, MetricNames.DecoderProtectedRowLimit, MetricNames.DecoderHeldRows);
        // GPUs through the NVIDIA DCGM exporter's own names; on CPU they have no series and the panels say so.
        Shows("GPU utilization", "DCGM_FI_DEV_GPU_UTIL");
        Shows("GPU memory", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE");
        Shows("GPU power", "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_GPU_TEMP");
        Assert.All(panels.Where(p => Str(p, "title")!.StartsWith("GPU", StringComparison.Ordinal)),
            p => Assert.Contains("no data", Str(p, "fieldConfig.defaults.noValue"), StringComparison.Ordinal));

        // Every query goes through the dashboard's datasource variable, so it works on any Prometheus.
        Assert.All(panels, p => Assert.Equal("${datasource}", Str(p, "datasource.uid")));
    }

    [Fact]
    public void Every_metric_name_is_documented_in_the_configuration_contract()
    {
        string doc = Repo.ReadAllText("docs", "configuration.md");
        foreach (var (constant, name) in Contract.MetricConstants)
            Assert.True(doc.Contains("`" + name, StringComparison.Ordinal), $"MetricNames.{constant} ({name}) is not in docs/configuration.md.");
    }
}
