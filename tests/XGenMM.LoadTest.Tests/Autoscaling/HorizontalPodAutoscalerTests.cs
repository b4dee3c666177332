using System.Text.Json;
using System.Text.Json.Nodes;
using System.Xml.Linq;
using XGenMM.LoadTest.Autoscaling;

namespace XGenMM.LoadTest.Tests.Autoscaling;

/// <summary>
/// The HPA arithmetic against hand-worked cases from the Kubernetes documentation's rules: ceil(total / target) outside
/// a 0.1 tolerance, the largest recommendation of the scale-down window, the smallest of the scale-up window, policies
/// counted from the replicas at the start of their period, and min/max bounds.
/// </summary>
public sealed class HorizontalPodAutoscalerTests
{
    /// <summary>The chart's behavior: up by 2 pods per 60 s with no window, down by 1 pod per 120 s after a 30 s window.</summary>
    private static AutoscalerSpec ChartLike(int min = 1, int max = 8, double target = 2, int downWindow = 30) => new(min, max, [target],
        new ScalingRules(0, [new ScalingPolicy(ScalingPolicyType.Pods, 2, 60)]),
        new ScalingRules(downWindow, [new ScalingPolicy(ScalingPolicyType.Pods, 1, 120)]));

    [Fact]
    public void Within_the_tolerance_the_pods_that_exist_are_kept()
    {
        var hpa = new HorizontalPodAutoscaler(ChartLike());
        // 4.3 over 2 pods with a target of 2: ratio 1.075, within 0.1.
        var d = hpa.Evaluate(0, currentReplicas: 2, statusReplicas: 2, [4.3]);
        Assert.Equal(2, d.Proposed);
        Assert.Equal(2, d.Desired);
        Assert.False(d.Changes);
        // 4.5: ratio 1.125, outside: ceil(4.5 / 2) = 3.
        Assert.Equal(3, new HorizontalPodAutoscaler(ChartLike()).Evaluate(0, 2, 2, [4.5]).Proposed);
        // 3.1 over 3 pods: ratio 0.52, outside: ceil(3.1 / 2) = 2.
        Assert.Equal(2, new HorizontalPodAutoscaler(ChartLike()).Evaluate(0, 3, 3, [3.1]).Proposed);
    }

    [Fact]
    public void Scaling_up_is_capped_by_the_pods_policy_of_its_period()
    {
        var hpa = new HorizontalPodAutoscaler(ChartLike());
        var first = hpa.Evaluate(0, 1, 1, [10]);
        Assert.Equal((5, 3), (first.Proposed!.Value, first.Desired));
        Assert.Equal("capped by the scale-up policy", first.Reason);
        // 30 s later the 2 pods added at 0 s still count: the period started at 1 replica, so 3 is the limit.
        var second = hpa.Evaluate(30, 3, 3, [20]);
        Assert.Equal((10, 3), (second.Proposed!.Value, second.Desired));
        // Once that event is older than 60 s, 2 more are allowed.
        var third = hpa.Evaluate(61, 3, 3, [20]);
        Assert.Equal(5, third.Desired);
    }

    [Fact]
    public void A_drop_in_load_scales_down_only_after_the_window_and_one_pod_per_period()
    {
        var hpa = new HorizontalPodAutoscaler(ChartLike(downWindow: 30));
        Assert.Equal(3, hpa.Evaluate(0, 3, 3, [6]).Desired);
        // The load is gone: the metric proposes 0 (bounded to min 1), but the window still holds the 3 of 0 s.
        for (int t = 5; t < 30; t += 5)
        {
            var held = hpa.Evaluate(t, 3, 3, [0]);
            Assert.Equal(0, held.Proposed);
            Assert.Equal(3, held.Desired);
        }
        var down = hpa.Evaluate(31, 3, 3, [0]);
        Assert.Equal(0, down.Stabilized); // the bounds apply after stabilization
        Assert.Equal(2, down.Desired); // one pod per 120 s
        Assert.Equal("held by the scale-down policy", down.Reason);
        Assert.Equal(2, hpa.Evaluate(100, 2, 2, [0]).Desired);
        Assert.Equal(1, hpa.Evaluate(152, 2, 2, [0]).Desired);
        var floor = hpa.Evaluate(400, 1, 1, [0]);
        Assert.Equal((1, "held at minReplicas"), (floor.Desired, floor.Reason));
        Assert.Equal((1, "steady"), (hpa.Evaluate(401, 1, 1, [1]).Desired, hpa.Evaluate(402, 1, 1, [1]).Reason));
    }

    [Fact]
    public void A_short_dip_inside_the_window_does_not_scale_down()
    {
        var hpa = new HorizontalPodAutoscaler(ChartLike(downWindow: 30));
        Assert.Equal(2, hpa.Evaluate(0, 2, 2, [4]).Desired);
        Assert.Equal(2, hpa.Evaluate(10, 2, 2, [0]).Desired);
        Assert.Equal(2, hpa.Evaluate(20, 2, 2, [4]).Desired);
        // 40 s: the 0 of 10 s has left the window, the 2 of 20 s has not.
        Assert.Equal(2, hpa.Evaluate(40, 2, 2, [0]).Desired);
    }

    [Fact]
    public void A_scale_up_window_takes_the_smallest_recent_recommendation()
    {
        var spec = ChartLike() with { ScaleUp = new ScalingRules(20, [new ScalingPolicy(ScalingPolicyType.Pods, 10, 60)]) };
        var hpa = new HorizontalPodAutoscaler(spec);
        Assert.Equal(1, hpa.Evaluate(0, 1, 1, [1]).Desired);
        Assert.Equal(1, hpa.Evaluate(10, 1, 1, [8]).Desired); // the 1 of 0 s is the smallest in the window
        Assert.Equal(4, hpa.Evaluate(21, 1, 1, [8]).Desired); // now only the 4 of 10 s and 21 s remain
    }

    [Fact]
    public void Min_and_max_replicas_bound_the_result()
    {
        var hpa = new HorizontalPodAutoscaler(ChartLike(min: 2, max: 3) with { ScaleUp = ScalingRules.DefaultScaleUp });
        var up = hpa.Evaluate(0, 2, 2, [40]);
        Assert.Equal((20, 3, "capped at maxReplicas"), (up.Proposed!.Value, up.Desired, up.Reason));
        var spec = ChartLike(min: 2, max: 3, downWindow: 0) with { ScaleDown = new ScalingRules(0, [new ScalingPolicy(ScalingPolicyType.Percent, 100, 15)]) };
        var down = new HorizontalPodAutoscaler(spec).Evaluate(0, 3, 3, [0]);
        Assert.Equal((2, "held at minReplicas"), (down.Desired, down.Reason));
    }

    [Fact]
    public void The_default_scale_up_allows_doubling_or_four_pods_whichever_is_more()
    {
        var spec = new AutoscalerSpec(1, 100, [1], ScalingRules.DefaultScaleUp, ScalingRules.DefaultScaleDown);
        Assert.Equal(5, new HorizontalPodAutoscaler(spec).Evaluate(0, 1, 1, [50]).Desired);   // 1 + 4 > 1 x 2
        Assert.Equal(20, new HorizontalPodAutoscaler(spec).Evaluate(0, 10, 10, [50]).Desired); // 10 x 2 > 10 + 4
        var min = spec with { ScaleUp = ScalingRules.DefaultScaleUp with { Select = SelectPolicy.Min } };
        Assert.Equal(14, new HorizontalPodAutoscaler(min).Evaluate(0, 10, 10, [50]).Desired);
        var disabled = spec with { ScaleUp = ScalingRules.DefaultScaleUp with { Select = SelectPolicy.Disabled } };
        Assert.Equal(10, new HorizontalPodAutoscaler(disabled).Evaluate(0, 10, 10, [50]).Desired);
    }

    [Fact]
    public void Several_metrics_take_the_largest_proposal_and_no_metric_means_no_change()
    {
        var spec = ChartLike() with { AverageValueTargets = [2, 100] };
        var d = new HorizontalPodAutoscaler(spec).Evaluate(0, 1, 1, [1, 250]);
        Assert.Equal(3, d.Proposed);
        var none = new HorizontalPodAutoscaler(spec).Evaluate(0, 2, 2, [null, null]);
        Assert.Equal((null, 2), (none.Proposed, none.Desired));
        Assert.Throws<ArgumentException>(() => new HorizontalPodAutoscaler(spec).Evaluate(0, 1, 1, [1]));
    }

    [Fact]
    public void Bad_specs_and_time_going_back_are_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new HorizontalPodAutoscaler(ChartLike(min: 0)));
        Assert.Throws<ArgumentOutOfRangeException>(() => new HorizontalPodAutoscaler(ChartLike(min: 3, max: 2)));
        Assert.Throws<ArgumentOutOfRangeException>(() => new HorizontalPodAutoscaler(ChartLike(target: 0)));
        var hpa = new HorizontalPodAutoscaler(ChartLike());
        hpa.Evaluate(10, 1, 1, [0]);
        Assert.Throws<ArgumentOutOfRangeException>(() => hpa.Evaluate(9, 1, 1, [0]));
    }

    [Fact]
    public void A_rendered_ScaledObject_becomes_the_HPA_that_KEDA_makes()
    {
        var so = JsonNode.Parse("""
            {"apiVersion":"keda.sh/v1alpha1","kind":"ScaledObject","metadata":{"name":"xg-xgenmm-decoder"},
             "spec":{"scaleTargetRef":{"apiVersion":"apps/v1","kind":"Deployment","name":"xg-xgenmm-decoder"},
               "minReplicaCount":1,"maxReplicaCount":3,"pollingInterval":15,"cooldownPeriod":300,
               "advanced":{"horizontalPodAutoscalerConfig":{"behavior":{
                 "scaleDown":{"stabilizationWindowSeconds":20,"policies":[{"type":"Pods","value":1,"periodSeconds":120}]},
                 "scaleUp":{"stabilizationWindowSeconds":0,"policies":[{"type":"Pods","value":2,"periodSeconds":60}]}}}},
               "triggers":[{"type":"prometheus","name":"xgenmm-num-requests-waiting","metricType":"AverageValue",
                 "metadata":{"serverAddress":"http://prometheus:9090","query":"sum(xgenmm_num_requests_waiting{namespace=\"serving\"})","threshold":"2"}}]}}
            """)!.AsObject();
        var spec = ScaledObjectReader.Read(so);
        Assert.Equal("xg-xgenmm-decoder", spec.TargetDeployment);
        var trigger = Assert.Single(spec.Triggers);
        Assert.Equal("sum(xgenmm_num_requests_waiting{namespace=\"serving\"})", trigger.Query);
        Assert.Equal(2, trigger.Threshold);
        Assert.Equal((1, 3), (spec.Autoscaler.MinReplicas, spec.Autoscaler.MaxReplicas));
        Assert.Equal(20, spec.Autoscaler.ScaleDown.StabilizationWindowSeconds);
        Assert.Equal(new ScalingPolicy(ScalingPolicyType.Pods, 2, 60), Assert.Single(spec.Autoscaler.ScaleUp.Policies));
        Assert.Equal(0.1, spec.Autoscaler.Tolerance);

        // Without a behavior KEDA leaves the HPA's defaults; a trigger of another kind is refused by name.
        so["spec"]!["advanced"] = null;
        Assert.Equal(ScalingRules.DefaultScaleDown, ScaledObjectReader.Read(so).Autoscaler.ScaleDown);
        so["spec"]!["triggers"]![0]!["type"] = "cpu";
        Assert.Contains("'cpu' trigger", Assert.Throws<FormatException>(() => ScaledObjectReader.Read(so)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Prometheus_results_are_summed_and_an_empty_vector_is_zero()
    {
        static double Sum(string json) => PrometheusQueryClient.Sum(JsonDocument.Parse(json).RootElement);
        Assert.Equal(7.5, Sum("""{"resultType":"vector","result":[{"metric":{},"value":[1700000000.1,"5"]},{"metric":{"pod":"b"},"value":[1700000000.1,"2.5"]}]}"""));
        Assert.Equal(0, Sum("""{"resultType":"vector","result":[]}"""));
        Assert.Equal(3, Sum("""{"resultType":"scalar","result":[1700000000.1,"3"]}"""));
        Assert.Throws<InvalidOperationException>(() => Sum("""{"resultType":"matrix","result":[]}"""));
    }

    [Fact]
    public void The_report_has_a_row_per_sync_period_and_two_charts()
    {
        var report = new AutoscalingReport
        {
            Query = "sum(x)", Threshold = 2, MinReplicas = 1, MaxReplicas = 3,
            Samples =
            [
                new AutoscalingSample { Seconds = 0, Load = 2, Metric = 0, MetricPerReplica = 0, Proposed = 0, Desired = 1, LiveSilos = 1, Reason = "steady" },
                new AutoscalingSample { Seconds = 2, Load = 12, Streaming = 2, Metric = 10, MetricPerReplica = 10, Proposed = 5, Desired = 3, LiveSilos = 1, Reason = "capped by the scale-up policy" },
            ],
            ScaleUps = [new ScaleUpRecord { Silo = "decoder-2", DecidedAt = 2, ReadyAt = 9, FirstServedAt = 10 }],
        };
        string dir = Path.Combine(Path.GetTempPath(), "xgenmm-autoscaling-report-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            var files = AutoscalingReportWriter.Write(report, dir);
            Assert.Equal(5, files.Count);
            var csv = File.ReadAllLines(Path.Combine(dir, "autoscaling.csv"));
            Assert.Equal(3, csv.Length);
            Assert.Equal("2.0,12,2,10,10,2,5,3,1,0,capped by the scale-up policy", csv[2]);
            Assert.Contains("metric / replica", XDocument.Load(Path.Combine(dir, "autoscaling-load.svg")).ToString(), StringComparison.Ordinal);
            Assert.Contains("desired (HPA)", XDocument.Load(Path.Combine(dir, "autoscaling-replicas.svg")).ToString(), StringComparison.Ordinal);
            Assert.Equal(8, AutoscalingReportWriter.Read(Path.Combine(dir, "autoscaling.json")).ScaleUps[0].TimeToTakeLoadSeconds);
            Assert.Contains("first token served after 8 s", File.ReadAllText(Path.Combine(dir, "autoscaling.md")), StringComparison.Ordinal);
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }
}
