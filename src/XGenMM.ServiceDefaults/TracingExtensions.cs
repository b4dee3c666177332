using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry.Exporter;
using OpenTelemetry.Trace;

namespace XGenMM.ServiceDefaults;

/// <summary>
/// OpenTelemetry traces of Orleans grain calls (gateway -> vision grain -> decoder grain, one trace per request thanks
/// to activity propagation), exported over OTLP when <c>Telemetry:OtlpEndpoint</c> or <c>OTEL_EXPORTER_OTLP_ENDPOINT</c>
/// is set; nothing is collected otherwise.
/// </summary>
public static class TracingExtensions
{
    public static IServiceCollection AddXGenMMTracing(this IServiceCollection services, IConfiguration configuration, Action<TracerProviderBuilder>? more = null)
    {
        string? endpoint = configuration["Telemetry:OtlpEndpoint"];
        if (string.IsNullOrWhiteSpace(endpoint) && string.IsNullOrWhiteSpace(configuration["OTEL_EXPORTER_OTLP_ENDPOINT"])) return services;
        services.AddOpenTelemetry().WithTracing(tracing =>
        {
            tracing.AddSource("Microsoft.Orleans.Runtime", "Microsoft.Orleans.Application");
            more?.Invoke(tracing);
            tracing.AddOtlpExporter(o =>
            {
                if (string.IsNullOrWhiteSpace(endpoint)) return; // the OTEL_EXPORTER_OTLP_* variables configure it
                o.Endpoint = new Uri(endpoint);
                if (string.Equals(configuration["Telemetry:OtlpProtocol"], "http/protobuf", StringComparison.OrdinalIgnoreCase))
                    o.Protocol = OtlpExportProtocol.HttpProtobuf;
            });
        });
        return services;
    }
}
