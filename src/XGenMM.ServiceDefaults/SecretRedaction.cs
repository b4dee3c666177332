using System.Diagnostics;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace XGenMM.ServiceDefaults;

/// <summary>
/// Keeps API keys out of logs and traces. Browsers cannot set headers on WebSockets, so SignalR sends the key as
/// <c>?access_token=</c>, and ASP.NET Core's hosting log writes every request line with its query string at
/// Information (two lines per negotiate); any other component may log a URL too. So every log line of the host passes
/// through <see cref="Redact"/>, whichever provider writes it, and the request span's <c>url.query</c> is rewritten.
/// </summary>
public static partial class SecretRedaction
{
    public const string Redacted = "[redacted]";

    // Query parameters that carry credentials by convention (SignalR, OpenAI-style and cloud SDK clients).
    [GeneratedRegex(@"(?<=[?&;]|^)(access_token|api[_-]?key|apikey|key|token|auth|authorization|password|secret|sig|signature|x-api-key)=[^&\s""'#;]*",
        RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex SecretParameter();

    [GeneratedRegex(@"\b(Bearer|Basic)\s+[A-Za-z0-9\-._~+/=]+", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex SecretHeader();

    /// <summary><paramref name="text"/> with credential query values and Authorization header values replaced.</summary>
    public static string Redact(string text)
    {
        if (text.Length == 0) return text;
        if (text.Contains('=', StringComparison.Ordinal)) text = SecretParameter().Replace(text, m => m.Value[..(m.Value.IndexOf('=', StringComparison.Ordinal) + 1)] + Redacted);
        if (text.Contains("Bearer", StringComparison.OrdinalIgnoreCase) || text.Contains("Basic", StringComparison.OrdinalIgnoreCase))
            text = SecretHeader().Replace(text, m => m.Groups[1].Value + " " + Redacted);
        return text;
    }

    /// <summary>
    /// Wraps every logger provider registered so far, so that what they write is redacted. Call it last, just before
    /// the host is built: a provider added after it is not wrapped.
    /// </summary>
    public static IServiceCollection AddXGenMMLogRedaction(this IServiceCollection services)
    {
        for (int i = 0; i < services.Count; i++)
        {
            var d = services[i];
            if (d.ServiceType != typeof(ILoggerProvider) || d.IsKeyedService) continue;
            Func<IServiceProvider, ILoggerProvider> inner = d.ImplementationInstance is ILoggerProvider instance ? _ => instance
                : d.ImplementationFactory is { } factory ? sp => (ILoggerProvider)factory(sp)
                : sp => (ILoggerProvider)ActivatorUtilities.CreateInstance(sp, d.ImplementationType!);
            services[i] = ServiceDescriptor.Singleton<ILoggerProvider>(sp => new RedactingLoggerProvider(inner(sp)));
        }
        return services;
    }

    /// <summary>For OpenTelemetry's ASP.NET Core instrumentation (EnrichWithHttpRequest): the request span's query, redacted.</summary>
    public static void EnrichRequest(Activity activity, HttpRequest request)
    {
        if (!request.QueryString.HasValue) return;
        activity.SetTag("url.query", Redact(request.QueryString.Value!.TrimStart('?')));
        if (activity.GetTagItem("http.target") is not null) activity.SetTag("http.target", Redact(request.Path + request.QueryString.Value));
        if (activity.GetTagItem("url.full") is string full) activity.SetTag("url.full", Redact(full));
    }

    private sealed class RedactingLoggerProvider(ILoggerProvider inner) : ILoggerProvider, ISupportExternalScope
    {
        public ILogger CreateLogger(string categoryName) => new RedactingLogger(inner.CreateLogger(categoryName));

        public void SetScopeProvider(IExternalScopeProvider scopeProvider)
        {
            if (inner is ISupportExternalScope scoped) scoped.SetScopeProvider(new RedactingScopeProvider(scopeProvider));
        }

        public void Dispose() => inner.Dispose();
    }

    private sealed class RedactingLogger(ILogger inner) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => inner.BeginScope(state);

        public bool IsEnabled(LogLevel logLevel) => inner.IsEnabled(logLevel);

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!inner.IsEnabled(logLevel)) return;
            string message = formatter(state, exception);
            string redacted = Redact(message);
            var values = state as IReadOnlyList<KeyValuePair<string, object?>>;
            bool valuesClean = values is null || values.All(v => v.Value is null or int or long or bool or double || Redact(v.Value.ToString() ?? "") == v.Value.ToString());
            bool exceptionClean = exception is null || string.Equals(Redact(exception.ToString()), exception.ToString(), StringComparison.Ordinal);
            if (string.Equals(redacted, message, StringComparison.Ordinal) && valuesClean && exceptionClean)
            {
                inner.Log(logLevel, eventId, state, exception, formatter);
                return;
            }
            // The structured values go too (JSON console and OTLP log exporters write them), each redacted as text.
            var safe = new List<KeyValuePair<string, object?>>();
            if (values is not null)
                foreach (var v in values)
                    safe.Add(new(v.Key, v.Value is null or int or long or bool or double ? v.Value : Redact(v.Value.ToString() ?? "")));
            inner.Log(logLevel, eventId, new RedactedState(safe, redacted), exceptionClean ? exception : new RedactedException(exception!), static (s, _) => s.Message);
        }
    }

    /// <summary>Scopes (the hosting scope carries the request path) are redacted when providers read them.</summary>
    private sealed class RedactingScopeProvider(IExternalScopeProvider inner) : IExternalScopeProvider
    {
        public void ForEachScope<TState>(Action<object?, TState> callback, TState state) =>
            inner.ForEachScope((scope, s) => callback(scope switch
            {
                null => null,
                IReadOnlyList<KeyValuePair<string, object?>> values => new RedactedState(
                    [.. values.Select(v => new KeyValuePair<string, object?>(v.Key, v.Value is null ? null : Redact(v.Value.ToString() ?? "")))], Redact(scope.ToString() ?? "")),
                _ => Redact(scope.ToString() ?? ""),
            }, s), state);

        public IDisposable Push(object? state) => inner.Push(state);
    }

    private sealed class RedactedState(List<KeyValuePair<string, object?>> values, string message) : IReadOnlyList<KeyValuePair<string, object?>>
    {
        public string Message { get; } = message;
        public KeyValuePair<string, object?> this[int index] => values[index];
        public int Count => values.Count;
        public IEnumerator<KeyValuePair<string, object?>> GetEnumerator() => values.GetEnumerator();
        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
        public override string ToString() => Message;
    }

    /// <summary>An exception whose message and stack text are redacted (a URL in an exception message is common).</summary>
    private sealed class RedactedException(Exception inner) : Exception(Redact(inner.Message))
    {
        public override string? StackTrace => inner.StackTrace;
        public override string ToString() => Redact(inner.ToString());
    }
}
