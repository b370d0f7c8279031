using System.Collections.Concurrent;
using FineTune.Workflow;
using Microsoft.Extensions.Logging;

namespace FineTune.Testing;

/// <summary>
/// What a test host logged that tells why a run went wrong: warnings and errors, and every failed activity with its
/// exception (the worker logs those at Information, with the retries that follow them). The latest entries only.
/// </summary>
public sealed class HostLog : ILoggerProvider
{
    private const int Kept = 200;
    private const string Activities = "Microsoft.DurableTask.Worker.Activities";
    private readonly ConcurrentQueue<string> _entries = new();

    /// <summary>A logger factory that records into this log: the worker's activity outcomes, warnings of the rest.</summary>
    public ILoggerFactory Factory() => LoggerFactory.Create(logging => logging
        .SetMinimumLevel(LogLevel.Warning)
        .AddFilter(Activities, LogLevel.Information)
        .AddFineTuneLogFilters()
        .AddProvider(this));

    public override string ToString() => _entries.IsEmpty ? "(nothing)" : string.Join(Environment.NewLine, _entries);

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void Dispose()
    {
    }

    private void Add(string entry)
    {
        _entries.Enqueue(entry);
        while (_entries.Count > Kept) _entries.TryDequeue(out _);
    }

    private sealed class Logger(HostLog log, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (logLevel < LogLevel.Warning && !(category == Activities && exception is not null)) return;
            log.Add($"{DateTime.UtcNow:HH:mm:ss.fff} {logLevel} {category}: {formatter(state, exception)}{(exception is null ? "" : " " + exception.GetType() + ": " + exception.Message)}");
        }
    }
}
