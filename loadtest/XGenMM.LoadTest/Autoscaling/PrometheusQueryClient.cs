using System.Globalization;
using System.Text.Json;

namespace XGenMM.LoadTest.Autoscaling;

/// <summary>
/// Instant queries against a Prometheus server's HTTP API (<c>GET /api/v1/query</c>). A vector result is summed (the
/// chart's queries are sums, so they give one sample); an empty vector reads as 0, as KEDA's Prometheus scaler treats
/// it by default (ignoreNullValues), since a sum over no series is what Prometheus answers when no pod reports.
/// </summary>
public sealed class PrometheusQueryClient(HttpClient http)
{
    /// <summary>The query's value now; throws <see cref="InvalidOperationException"/> when Prometheus reports an error.</summary>
    public async Task<double> QueryAsync(string query, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(query);
        var uri = new Uri("api/v1/query?query=" + Uri.EscapeDataString(query), UriKind.Relative);
        using var response = await http.GetAsync(uri, cancellationToken).ConfigureAwait(false);
        string body = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
        using var json = JsonDocument.Parse(body);
        var root = json.RootElement;
        if (root.GetProperty("status").GetString() != "success")
            throw new InvalidOperationException($"Prometheus refused '{query}': {(root.TryGetProperty("error", out var e) ? e.GetString() : body)}");
        return Sum(root.GetProperty("data"));
    }

    /// <summary>The sum of a query result's values (vector or scalar).</summary>
    internal static double Sum(JsonElement data)
    {
        string type = data.GetProperty("resultType").GetString() ?? "";
        var result = data.GetProperty("result");
        return type switch
        {
            "vector" => result.EnumerateArray().Sum(sample => Value(sample.GetProperty("value"))),
            "scalar" => Value(result),
            _ => throw new InvalidOperationException($"A {type} result is not a number (the chart's triggers are instant sums)."),
        };
    }

    // A sample value is [unix time, "value as a string"].
    private static double Value(JsonElement pair) =>
        double.Parse(pair[1].GetString() ?? "NaN", NumberStyles.Float, CultureInfo.InvariantCulture);
}
