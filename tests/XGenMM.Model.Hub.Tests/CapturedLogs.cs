using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace XGenMM.Model.Hub.Tests;

/// <summary>A logger that keeps every formatted line (with its exception) so tests can read what an operator would see.</summary>
internal sealed class CapturedLogs : ILogger
{
    public ConcurrentQueue<string> Lines { get; } = new();

    public string All => string.Join('\n', Lines);

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
        Lines.Enqueue($"{logLevel}: {formatter(state, exception)}{(exception is null ? "" : " | " + exception)}");
}
