using Microsoft.Extensions.Options;
using XGenMM.Cluster.Client;
using XGenMM.Cluster.Hosting;

namespace XGenMM.Gateway.Hosting;

/// <summary>Ready when requests can be served: in Local mode once the co-hosted silo's engines are loaded, in Cluster
/// mode once at least one decoder that is not draining is registered.</summary>
internal static class Readiness
{
    public static async Task<IResult> CheckAsync(HttpContext http, IOptions<GatewayOptions> options, IClusterChat cluster)
    {
        if (options.Value.Mode == GatewayMode.Local)
        {
            var state = http.RequestServices.GetRequiredService<SiloState>();
            if (!state.Ready)
                return Results.Json(new { status = state.Draining ? "draining" : state.FailedReason is null ? "starting" : "failed", reason = state.FailedReason }, statusCode: 503);
        }
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
