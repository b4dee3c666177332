using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace XGenMM.ServiceDefaults;

/// <summary>Whether what a host runs besides its HTTP endpoints (a silo's engines) can take traffic.</summary>
public interface IHostReadiness
{
    HostReadinessState Readiness { get; }
}

/// <param name="Ready">True when traffic may be routed here.</param>
/// <param name="Status">ready, starting, draining or failed.</param>
/// <param name="Reason">Why it failed, when it did.</param>
public sealed record HostReadinessState(bool Ready, string Status, string? Reason = null);

public static class HealthEndpoints
{
    /// <summary>Liveness: the process answers. Kubernetes restarts a pod whose liveness fails, so it checks nothing else.</summary>
    public static IEndpointConventionBuilder MapXGenMMLiveness(this IEndpointRouteBuilder endpoints, string pattern = "/healthz") =>
        endpoints.MapGet(pattern, () => Results.Ok(new { status = "alive" }));

    /// <summary>Readiness of a host that has nothing to check but <paramref name="readiness"/>: 200 or 503 with the status.</summary>
    public static IEndpointConventionBuilder MapXGenMMReadiness(this IEndpointRouteBuilder endpoints, IHostReadiness readiness, string pattern = "/readyz") =>
        endpoints.MapGet(pattern, () => readiness.Readiness is var state && state.Ready
            ? Results.Ok(new { status = state.Status })
            : Results.Json(new { status = state.Status, reason = state.Reason }, statusCode: StatusCodes.Status503ServiceUnavailable));
}
