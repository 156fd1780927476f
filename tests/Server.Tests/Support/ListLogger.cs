using System.Globalization;
using System.Text;
using Microsoft.Extensions.Logging;

namespace AlphaMesh.Server.Tests.Support;

/// <summary>Keeps what the SDK logs (stream failures, reconnects), for the message of a failed test.</summary>
internal sealed class ListLogger : ILogger
{
    private readonly StringBuilder _text = new();

    public string Text
    {
        get
        {
            lock (_text)
                return _text.ToString();
        }
    }

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        lock (_text)
            _text.Append(DateTime.UtcNow.ToString("HH:mm:ss.fff", CultureInfo.InvariantCulture)).Append(' ').Append(formatter(state, exception)).Append(' ').AppendLine(exception?.Message);
    }
}

/// <summary>Hands one <see cref="ListLogger"/> to every category (a server's log, in a test).</summary>
internal sealed class ListLoggerProvider(ListLogger logger) : ILoggerProvider
{
    public ILogger CreateLogger(string categoryName) => logger;

    public void Dispose()
    {
    }
}
