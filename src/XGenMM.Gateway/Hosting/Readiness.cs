using XGenMM.Cluster.Client;
using XGenMM.ServiceDefaults;

namespace XGenMM.Gateway.Hosting;

/// <summary>Ready when requests can be served: at least one decoder that is not draining is registered and, in Local mode,
/// the co-hosted silo's engines are loaded.</summary>
internal static class Readiness
{
    public static async Task<IResult> CheckAsync(HttpContext http, IClusterChat cluster)
    {
        if (http.RequestServices.GetService<IHostReadiness>()?.Readiness is { Ready: false } host)
            return Results.Json(new { status = host.Status, reason = host.Reason }, statusCode: 503);
        try
        {
            var decoders = await cluster.GetDecodersAsync(http.RequestAborted).WaitAsync(TimeSpan.FromSeconds(5), http.RequestAborted).ConfigureAwait(false);
            int live = decoders.Count(d => !d.Draining);
            return live > 0
                ? Results.Ok(new { status = "ready", decoders = live })
                : Results.Json(new { status = "no decoders", decoders = 0 }, statusCode: 503);
        }
        catch (Exception e) when (e is OrleansException or TimeoutException or InvalidOperationException)
        {
            return Results.Json(new { status = "cluster unreachable", reason = e.Message }, statusCode: 503);
        }
    }
}
