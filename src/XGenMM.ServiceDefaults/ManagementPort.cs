using System.Globalization;
using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Configuration;

namespace XGenMM.ServiceDefaults;

/// <summary>Bound from <c>Management</c>: where a host with a public port serves its metrics and probes.</summary>
public sealed class ManagementOptions
{
    /// <summary>
    /// The port of <c>/metrics</c>, <c>/healthz</c> and <c>/readyz</c>; 0 = none: then <c>/metrics</c> answers only
    /// callers on loopback (tenant ids and traffic are no one else's business) and the probes stay on the public port.
    /// </summary>
    public int Port { get; set; }

    /// <summary>The address the management port listens on: <c>0.0.0.0</c> in containers (Prometheus and the kubelet
    /// reach the pod IP), <c>127.0.0.1</c> for a host on a shared machine.</summary>
    public string Address { get; set; } = "0.0.0.0";
}

/// <summary>
/// Splits what operators read (metrics, probes) from what tenants call: with <c>Management:Port</c> set, a host listens
/// on it as well as on its public URLs, serves only the management paths there, and answers 404 for <c>/metrics</c>
/// on the public port. The split goes by the port the connection arrived on, not by the Host header (which a client
/// chooses, so RequireHost("*:9090") would let anyone ask the public port for metrics with Host: x:9090).
/// </summary>
public static class ManagementPort
{
    public static readonly PathString[] Paths = ["/metrics", "/healthz", "/readyz"];

    public static ManagementOptions Read(IConfiguration configuration) => configuration.GetSection("Management").Get<ManagementOptions>() ?? new ManagementOptions();

    /// <summary>Adds the management listener to the host's URLs (public ones from <c>--urls</c>, <c>ASPNETCORE_URLS</c>
    /// or <c>ASPNETCORE_HTTP_PORTS</c>, or Kestrel's default); Kestrel would drop those URLs if it were given an endpoint in code.</summary>
    public static ManagementOptions AddXGenMMManagementPort(this WebApplicationBuilder builder)
    {
        var options = Read(builder.Configuration);
        if (options.Port is < 0 or > 65535) throw new InvalidOperationException($"Management:Port must be 0 (none) or a port number; got {options.Port}.");
        if (options.Port == 0) return options;
        if (!IPAddress.TryParse(options.Address, out var address))
            throw new InvalidOperationException($"Management:Address must be an IP address; got '{options.Address}'.");
        string urls = builder.Configuration[WebHostDefaults.ServerUrlsKey] is { Length: > 0 } configured ? configured
            : builder.Configuration["HTTP_PORTS"] is { Length: > 0 } ports
                ? string.Join(';', ports.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(p => "http://*:" + p))
            : "http://localhost:5000";
        string host = address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{address}]" : address.ToString();
        builder.WebHost.UseUrls([.. urls.Split(';', StringSplitOptions.RemoveEmptyEntries), $"http://{host}:{options.Port.ToString(CultureInfo.InvariantCulture)}"]);
        return options;
    }

    /// <summary>First in the pipeline: the management port serves only <see cref="Paths"/>, the public port no <c>/metrics</c>.</summary>
    public static IApplicationBuilder UseXGenMMManagementPort(this IApplicationBuilder app, ManagementOptions options) => app.Use((context, next) =>
    {
        bool management = Paths.Any(p => context.Request.Path.Equals(p, StringComparison.OrdinalIgnoreCase));
        bool metrics = context.Request.Path.Equals("/metrics", StringComparison.OrdinalIgnoreCase);
        bool allowed = options.Port > 0
            ? context.Connection.LocalPort == options.Port ? management : !metrics
            : !metrics || context.Connection.RemoteIpAddress is { } remote && IPAddress.IsLoopback(remote);
        if (allowed) return next(context);
        context.Response.StatusCode = StatusCodes.Status404NotFound;
        return Task.CompletedTask;
    });
}
