namespace XGenMM.LoadTest.Autoscaling;

/// <summary>How a scaling policy limits change: by a number of pods or by a percentage of the pods at the period's start.</summary>
public enum ScalingPolicyType
{
    Pods,
    Percent,
}

/// <summary>How the limits of several policies combine: Max allows the largest change, Min the smallest, Disabled none.</summary>
public enum SelectPolicy
{
    Max,
    Min,
    Disabled,
}

/// <summary>One HPAScalingPolicy: at most <see cref="Value"/> pods (or percent) of change within <see cref="PeriodSeconds"/>.</summary>
public sealed record ScalingPolicy(ScalingPolicyType Type, int Value, int PeriodSeconds);

/// <summary>One direction of an HPA's behavior (HPAScalingRules).</summary>
public sealed record ScalingRules(int StabilizationWindowSeconds, IReadOnlyList<ScalingPolicy> Policies, SelectPolicy Select = SelectPolicy.Max)
{
    /// <summary>The autoscaling/v2 default for scaling up: no stabilization, double or add 4 pods per 15 s, whichever is more.</summary>
    public static ScalingRules DefaultScaleUp { get; } =
        new(0, [new ScalingPolicy(ScalingPolicyType.Percent, 100, 15), new ScalingPolicy(ScalingPolicyType.Pods, 4, 15)]);

    /// <summary>The autoscaling/v2 default for scaling down: a 300 s window, then any number of pods per 15 s.</summary>
    public static ScalingRules DefaultScaleDown { get; } = new(300, [new ScalingPolicy(ScalingPolicyType.Percent, 100, 15)]);
}

/// <summary>
/// What an HPA needs to decide: replica bounds, one average-value target per metric (the metric is a total over the
/// workload's pods, as KEDA's Prometheus trigger with metricType AverageValue gives it), the tolerance and the behavior.
/// </summary>
public sealed record AutoscalerSpec(int MinReplicas, int MaxReplicas, IReadOnlyList<double> AverageValueTargets, ScalingRules ScaleUp, ScalingRules ScaleDown,
    double Tolerance = HorizontalPodAutoscaler.DefaultTolerance)
{
    public void Validate()
    {
        if (MinReplicas < 1) throw new ArgumentOutOfRangeException(nameof(MinReplicas), MinReplicas, "must be at least 1 (scaling to zero is KEDA's activation, not the HPA's).");
        if (MaxReplicas < MinReplicas) throw new ArgumentOutOfRangeException(nameof(MaxReplicas), MaxReplicas, $"must not be below MinReplicas ({MinReplicas}).");
        if (AverageValueTargets.Count == 0) throw new ArgumentException("at least one metric target is needed.", nameof(AverageValueTargets));
        foreach (double t in AverageValueTargets)
            if (!(t > 0)) throw new ArgumentOutOfRangeException(nameof(AverageValueTargets), t, "every target must be positive.");
        if (!(Tolerance >= 0)) throw new ArgumentOutOfRangeException(nameof(Tolerance), Tolerance, "must not be negative.");
        foreach (var rules in new[] { ScaleUp, ScaleDown })
        {
            if (rules.StabilizationWindowSeconds is < 0 or > 3600)
                throw new ArgumentOutOfRangeException(nameof(rules.StabilizationWindowSeconds), rules.StabilizationWindowSeconds, "must be within 0..3600 s.");
            foreach (var p in rules.Policies)
                if (p.Value <= 0 || p.PeriodSeconds is <= 0 or > 1800)
                    throw new ArgumentOutOfRangeException(nameof(rules.Policies), p, "a policy needs a positive value and a period within 1..1800 s.");
        }
    }
}

/// <summary>One evaluation: the metrics' proposal, what stabilization made of it, and the replica count to set.</summary>
public sealed record ScaleDecision(double Seconds, int CurrentReplicas, int StatusReplicas, IReadOnlyList<double?> Metrics, int? Proposed, int Stabilized, int Desired, string Reason)
{
    public bool Changes => Desired != CurrentReplicas;
}

/// <summary>
/// The replica arithmetic of the Kubernetes horizontal pod autoscaler (autoscaling/v2), evaluated once per sync period:
/// <list type="number">
/// <item>Per metric, with the total over the pods and an AverageValue target: usage ratio = total / (target x pods);
/// within the tolerance (|1 - ratio| &lt;= 0.1) the proposal is the pods that exist, else ceil(total / target). Several
/// metrics: the largest proposal. No metric readable: no change.</item>
/// <item>Stabilization: proposals are remembered with their time; the recommendation is kept between the smallest
/// proposal of the scale-up window and the largest of the scale-down window (so a drop in load scales down only after
/// it lasted the whole window).</item>
/// <item>Policies: the change is limited by the rules of its direction, counted from the replicas at the start of each
/// policy's period (scale events of that period undone), then bounded by min/max replicas.</item>
/// </list>
/// The class has no clock: every call says when it happens, so tests replay time exactly.
/// </summary>
public sealed class HorizontalPodAutoscaler
{
    /// <summary>The controller's default --horizontal-pod-autoscaler-tolerance.</summary>
    public const double DefaultTolerance = 0.1;

    private readonly AutoscalerSpec _spec;
    private readonly List<(double Seconds, int Replicas)> _recommendations = [];
    private readonly List<(double Seconds, int Change)> _scaleEvents = [];

    public HorizontalPodAutoscaler(AutoscalerSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        spec.Validate();
        _spec = spec;
    }

    public AutoscalerSpec Spec => _spec;

    /// <param name="seconds">Time of this evaluation, on any clock that only moves forward.</param>
    /// <param name="currentReplicas">The workload's replica count as last set (the Deployment's spec.replicas).</param>
    /// <param name="statusReplicas">Pods that exist now (status.replicas): the divisor of the usage ratio.</param>
    /// <param name="metricTotals">Per target of the spec, the metric's total over the pods; null when it could not be read.</param>
    public ScaleDecision Evaluate(double seconds, int currentReplicas, int statusReplicas, IReadOnlyList<double?> metricTotals)
    {
        ArgumentNullException.ThrowIfNull(metricTotals);
        if (metricTotals.Count != _spec.AverageValueTargets.Count)
            throw new ArgumentException($"{_spec.AverageValueTargets.Count} metric value(s) expected, got {metricTotals.Count}.", nameof(metricTotals));
        if (_recommendations.Count > 0 && seconds < _recommendations[^1].Seconds)
            throw new ArgumentOutOfRangeException(nameof(seconds), seconds, "evaluations must not go back in time.");

        int? proposed = null;
        for (int i = 0; i < metricTotals.Count; i++)
        {
            if (metricTotals[i] is not { } total || !double.IsFinite(total)) continue;
            int replicas = Propose(total, _spec.AverageValueTargets[i], statusReplicas);
            proposed = proposed is null ? replicas : Math.Max(proposed.Value, replicas);
        }
        if (proposed is null)
            return new ScaleDecision(seconds, currentReplicas, statusReplicas, metricTotals, null, currentReplicas, currentReplicas, "no metric could be read: no change");

        int stabilized = Stabilize(seconds, currentReplicas, proposed.Value);
        var (desired, reason) = Limit(seconds, currentReplicas, stabilized);
        if (desired != currentReplicas) _scaleEvents.Add((seconds, desired - currentReplicas));
        return new ScaleDecision(seconds, currentReplicas, statusReplicas, metricTotals, proposed, stabilized, desired, reason);
    }

    /// <summary>An external metric with an AverageValue target, as the controller computes it.</summary>
    /// <remarks>Within the tolerance the proposal is the pods that exist (status), as the controller's replica calculator
    /// returns them, not the count last set.</remarks>
    private int Propose(double total, double target, int statusReplicas)
    {
        // With no pods running the ratio is undefined; the proposal goes by the total alone.
        if (statusReplicas <= 0) return (int)Math.Ceiling(total / target);
        double ratio = total / (target * statusReplicas);
        if (Math.Abs(1.0 - ratio) <= _spec.Tolerance) return statusReplicas;
        return (int)Math.Ceiling(total / target);
    }

    private int Stabilize(double now, int currentReplicas, int proposed)
    {
        int up = proposed, down = proposed;
        foreach (var (at, replicas) in _recommendations)
        {
            if (at > now - _spec.ScaleUp.StabilizationWindowSeconds) up = Math.Min(up, replicas);
            if (at > now - _spec.ScaleDown.StabilizationWindowSeconds) down = Math.Max(down, replicas);
        }
        _recommendations.Add((now, proposed));
        // Older recommendations than either window can no longer matter.
        double keep = now - Math.Max(_spec.ScaleUp.StabilizationWindowSeconds, _spec.ScaleDown.StabilizationWindowSeconds);
        _recommendations.RemoveAll(r => r.Seconds <= keep && r.Seconds != now);
        return Math.Min(Math.Max(currentReplicas, up), down);
    }

    private (int Desired, string Reason) Limit(double now, int currentReplicas, int desired)
    {
        if (desired > currentReplicas)
        {
            int limit = Math.Max(currentReplicas, ScaleUpLimit(now, currentReplicas));
            int maximum = Math.Min(_spec.MaxReplicas, limit);
            if (desired > maximum)
                return (maximum, limit < _spec.MaxReplicas ? "capped by the scale-up policy" : "capped at maxReplicas");
            return (desired, "scale up");
        }
        if (desired < currentReplicas)
        {
            int limit = Math.Min(currentReplicas, ScaleDownLimit(now, currentReplicas));
            int minimum = Math.Max(_spec.MinReplicas, limit);
            if (desired < minimum)
                return (minimum, limit > _spec.MinReplicas ? "held by the scale-down policy" : "held at minReplicas");
            return (desired, "scale down");
        }
        return (desired, "steady");
    }

    private int ScaleUpLimit(double now, int current)
    {
        var rules = _spec.ScaleUp;
        if (rules.Select == SelectPolicy.Disabled || rules.Policies.Count == 0) return current;
        int? result = null;
        foreach (var p in rules.Policies)
        {
            int periodStart = current - Changes(now, p.PeriodSeconds, up: true) + Changes(now, p.PeriodSeconds, up: false);
            int proposed = p.Type == ScalingPolicyType.Pods
                ? periodStart + p.Value
                : (int)Math.Ceiling(periodStart * (1 + p.Value / 100.0));
            result = result is null ? proposed : rules.Select == SelectPolicy.Max ? Math.Max(result.Value, proposed) : Math.Min(result.Value, proposed);
        }
        return result!.Value;
    }

    private int ScaleDownLimit(double now, int current)
    {
        var rules = _spec.ScaleDown;
        if (rules.Select == SelectPolicy.Disabled || rules.Policies.Count == 0) return current;
        int? result = null;
        foreach (var p in rules.Policies)
        {
            int periodStart = current - Changes(now, p.PeriodSeconds, up: true) + Changes(now, p.PeriodSeconds, up: false);
            int proposed = p.Type == ScalingPolicyType.Pods
                ? periodStart - p.Value
                : (int)Math.Floor(periodStart * (1 - p.Value / 100.0));
            // For scaling down the largest change is the smallest count.
            result = result is null ? proposed : rules.Select == SelectPolicy.Max ? Math.Min(result.Value, proposed) : Math.Max(result.Value, proposed);
        }
        return result!.Value;
    }

    /// <summary>Pods added (up) or removed (down) by this autoscaler within the last <paramref name="period"/> seconds.</summary>
    private int Changes(double now, int period, bool up) =>
        _scaleEvents.Where(e => e.Seconds > now - period && (up ? e.Change > 0 : e.Change < 0)).Sum(e => Math.Abs(e.Change));
}
