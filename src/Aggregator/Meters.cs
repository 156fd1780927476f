namespace AlphaMesh.Aggregator;

/// <summary>How a meter combines the events of one window.</summary>
public enum Aggregation
{
    /// <summary>Number of events (the value property is optional and ignored).</summary>
    Count = 1,
    Sum = 2,
    Min = 3,
    Max = 4,
    /// <summary>Kept as sum and count, so that roll-ups divide once and stay exact.</summary>
    Avg = 5,
    /// <summary>The value of the event with the latest event time; ties broken by the event id (the greater XxHash128 of the id wins, so any arrival order gives the same value).</summary>
    Latest = 6,
    /// <summary>Number of distinct values of the value property (any text, not only numbers).</summary>
    UniqueCount = 7,
    /// <summary>A gauge integrated over time, in unit-seconds: each reading holds until the series' next reading
    /// in the same base window, or until the window's end.</summary>
    TimeWeightedSum = 8,
}

/// <summary>A window length. Meters keep MINUTE, HOUR or DAY windows; queries may also roll up to MONTH
/// (a calendar month in UTC).</summary>
public enum WindowSize
{
    Minute = 1,
    Hour = 2,
    Day = 3,
    Month = 4,
}

/// <summary>
/// A named aggregation over the events of one type of one tenant. Immutable once created: a change is a new
/// meter key, so history is never rewritten silently. A meter counts the events ingested at or after
/// <see cref="CreatedAt"/>, which keeps replay after a crash deterministic.
/// </summary>
public sealed record MeterDefinition
{
    public const int MaxGroupBy = 8;
    public const int MaxKeyLength = 64;
    public const int MaxEventTypeBytes = 256;
    public const int MaxPropertyBytes = 128;

    public required string Tenant { get; init; }
    public required string Key { get; init; }
    public required string EventType { get; init; }
    public required Aggregation Aggregation { get; init; }

    /// <summary>The data key the value is read from; required except for <see cref="Aggregation.Count"/>.</summary>
    public string? ValueProperty { get; init; }

    /// <summary>Data keys whose values split the meter into series (up to <see cref="MaxGroupBy"/>).
    /// An event that lacks one of them counts under the empty value.</summary>
    public IReadOnlyList<string> GroupBy { get; init; } = [];

    public WindowSize WindowSize { get; init; } = WindowSize.Hour;

    /// <summary>Set by the catalog when the meter is created.</summary>
    public DateTimeOffset CreatedAt { get; init; }

    /// <summary>Whether <paramref name="other"/> defines the same aggregation (creation time aside).</summary>
    public bool SameDefinitionAs(MeterDefinition other)
    {
        ArgumentNullException.ThrowIfNull(other);
        if (Tenant != other.Tenant || Key != other.Key || EventType != other.EventType || Aggregation != other.Aggregation
            || ValueProperty != other.ValueProperty || WindowSize != other.WindowSize || GroupBy.Count != other.GroupBy.Count)
            return false;
        for (int i = 0; i < GroupBy.Count; i++)
        {
            if (GroupBy[i] != other.GroupBy[i])
                return false;
        }
        return true;
    }

    /// <summary>Every problem of the definition, in words a user can act on; empty when it is valid.</summary>
    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        if (string.IsNullOrEmpty(Tenant))
            errors.Add("tenant is required.");
        if (string.IsNullOrEmpty(Key))
            errors.Add("key is required.");
        else if (Key.Length > MaxKeyLength || !IsKeyText(Key))
            errors.Add($"key '{Key}' must be 1 to {MaxKeyLength} characters of a-z, A-Z, 0-9, '_', '-' or '.'.");
        if (string.IsNullOrEmpty(EventType))
            errors.Add("eventType is required.");
        else if (System.Text.Encoding.UTF8.GetByteCount(EventType) > MaxEventTypeBytes)
            errors.Add($"eventType is longer than {MaxEventTypeBytes} bytes.");
        if (!Enum.IsDefined(Aggregation))
            errors.Add($"aggregation {(int)Aggregation} is not one of SUM, COUNT, MIN, MAX, AVG, LATEST, UNIQUE_COUNT, TIME_WEIGHTED_SUM.");
        if (Aggregation != Aggregation.Count && string.IsNullOrEmpty(ValueProperty))
            errors.Add($"valueProperty is required for {Aggregation} (it names the data key the value is read from).");
        if (ValueProperty is not null && System.Text.Encoding.UTF8.GetByteCount(ValueProperty) > MaxPropertyBytes)
            errors.Add($"valueProperty is longer than {MaxPropertyBytes} bytes.");
        if (WindowSize is not (WindowSize.Minute or WindowSize.Hour or WindowSize.Day))
            errors.Add("windowSize must be MINUTE, HOUR or DAY (MONTH is a query roll-up, not a stored window).");
        if (GroupBy is null)
        {
            errors.Add("groupBy must be a list (empty for none).");
            return errors;
        }
        if (GroupBy.Count > MaxGroupBy)
            errors.Add($"groupBy has {GroupBy.Count} keys; at most {MaxGroupBy} are allowed.");
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (string key in GroupBy)
        {
            if (string.IsNullOrEmpty(key))
                errors.Add("groupBy keys must not be empty.");
            else if (System.Text.Encoding.UTF8.GetByteCount(key) > MaxPropertyBytes)
                errors.Add($"groupBy key '{key}' is longer than {MaxPropertyBytes} bytes.");
            else if (!seen.Add(key))
                errors.Add($"groupBy key '{key}' appears twice.");
        }
        return errors;
    }

    private static bool IsKeyText(string key)
    {
        foreach (char c in key)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.'))
                return false;
        }
        return true;
    }
}

/// <summary>A meter definition that is not valid; <see cref="Errors"/> lists every problem.</summary>
public sealed class MeterValidationException : ArgumentException
{
    public MeterValidationException(IReadOnlyList<string> errors)
        : base("The meter definition is not valid: " + string.Join(" ", errors)) => Errors = errors;

    public IReadOnlyList<string> Errors { get; }
}

/// <summary>A meter with this key exists with another definition (definitions are immutable: use a new key).</summary>
public sealed class MeterConflictException : InvalidOperationException
{
    public MeterConflictException(MeterDefinition existing)
        : base($"Meter '{existing.Key}' of tenant '{existing.Tenant}' already exists with another definition; a meter's definition never changes, so create the new definition under a new key.")
        => Existing = existing;

    public MeterDefinition Existing { get; }
}

/// <summary>
/// The meters of every tenant. The aggregator reads it; the server's /v1/meters endpoints create and list
/// through it. This project provides a JSON file implementation (<see cref="MeterCatalogs.OpenFile"/>); the billing
/// issue provides another one behind the same interface.
/// </summary>
public interface IMeterCatalog
{
    /// <summary>Grows whenever a meter is added, so that readers can cheaply notice a change.</summary>
    long Version { get; }

    MeterDefinition? Find(string tenant, string key);

    /// <summary>The tenant's meters, ordered by key.</summary>
    IReadOnlyList<MeterDefinition> List(string tenant);

    /// <summary>Every meter of every tenant (the aggregator compiles its lookup tables from it).</summary>
    IReadOnlyList<MeterDefinition> ListAll();

    /// <summary>
    /// Creates the meter, stamping <see cref="MeterDefinition.CreatedAt"/>, and persists it before returning.
    /// Creating the same definition again returns the existing meter (idempotent). Throws
    /// <see cref="MeterValidationException"/> for an invalid definition and <see cref="MeterConflictException"/>
    /// when the key exists with another definition.
    /// </summary>
    ValueTask<MeterDefinition> CreateAsync(MeterDefinition definition, CancellationToken cancellationToken = default);
}

/// <summary>Opens the meter catalog implementations of this project.</summary>
public static class MeterCatalogs
{
    /// <summary>Opens (or creates) the catalog kept in the JSON file <paramref name="path"/> (for example
    /// <c>data/meters.json</c>). The file is replaced atomically on every change.</summary>
    public static IMeterCatalog OpenFile(string path, TimeProvider? timeProvider = null)
        => Internal.FileMeterCatalog.Open(path, timeProvider ?? TimeProvider.System);
}
