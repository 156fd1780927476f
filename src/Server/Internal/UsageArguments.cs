using System.Globalization;
using System.Text.Json;
using AlphaMesh.Aggregator;
using Timestamp = Google.Protobuf.WellKnownTypes.Timestamp;
using Proto = AlphaMesh.Usage.V1;

namespace AlphaMesh.Server.Internal;

/// <summary>
/// Conversion and checking of the arguments of the usage questions, for both transports: query-string text (HTTP)
/// and protobuf values (gRPC). Each converter adds a message naming the argument to <c>errors</c> when the value
/// is missing or wrong, so that one reply lists every problem. Arguments are named by their JSON names
/// (<c>windowSize</c>, <c>groupBy</c>), which are also the proto3 JSON names of the gRPC fields and the names the
/// aggregator's own messages use.
/// </summary>
internal static class UsageArguments
{
    private const string TimeExample = "for example 2026-01-01T00:00:00Z";

    /// <summary>The range of a valid <c>google.protobuf.Timestamp</c>: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.</summary>
    private const long MinTimestampSeconds = -62_135_596_800, MaxTimestampSeconds = 253_402_300_799;

    /// <summary>A required string argument (a meter key or a customer): empty is "is required".</summary>
    public static string Required(string? text, string name, List<string> errors)
    {
        if (string.IsNullOrEmpty(text))
            errors.Add($"{name} is required.");
        return text ?? "";
    }

    /// <summary>An RFC 3339 time from text.</summary>
    public static DateTimeOffset ParseTime(string? text, string name, List<string> errors)
    {
        if (string.IsNullOrEmpty(text))
        {
            errors.Add($"{name} is required (an RFC 3339 time, {TimeExample}).");
            return default;
        }
        // Strict: a date alone or a time without a zone would be a guess about which instant was meant.
        if (!AlphaMesh.BillingApi.Internal.ApiHttp.TryParseRfc3339(text, out var value))
            errors.Add($"{name} '{text}' is not an RFC 3339 time with a zone ({TimeExample}).");
        return value;
    }

    /// <summary>A time from a <c>google.protobuf.Timestamp</c>; unset is "is required".</summary>
    public static DateTimeOffset ToTime(Timestamp? value, string name, List<string> errors)
    {
        if (value is null)
        {
            errors.Add($"{name} is required (a google.protobuf.Timestamp, {TimeExample}).");
            return default;
        }
        if (value.Seconds is < MinTimestampSeconds or > MaxTimestampSeconds || value.Nanos is < 0 or >= 1_000_000_000)
        {
            errors.Add($"{name} (seconds {value.Seconds}, nanos {value.Nanos}) is not a valid google.protobuf.Timestamp.");
            return default;
        }
        return value.ToDateTimeOffset();
    }

    /// <summary>A query's window size from text: empty means the meter's own (null).</summary>
    public static WindowSize? ParseWindowSize(string? text, List<string> errors)
        => string.IsNullOrEmpty(text) ? null : ParseEnum<WindowSize>(text, "windowSize", required: true, errors);

    /// <summary>A query's window size from the protobuf enum: unspecified means the meter's own (null).</summary>
    public static WindowSize? ToWindowSize(Proto.WindowSize value, List<string> errors)
    {
        switch (value)
        {
            case Proto.WindowSize.Unspecified:
                return null;
            case Proto.WindowSize.Minute:
                return WindowSize.Minute;
            case Proto.WindowSize.Hour:
                return WindowSize.Hour;
            case Proto.WindowSize.Day:
                return WindowSize.Day;
            case Proto.WindowSize.Month:
                return WindowSize.Month;
            default:
                errors.Add($"windowSize {(int)value} is not one of {Names<WindowSize>()} (or unspecified for the meter's own).");
                return null;
        }
    }

    public static Proto.WindowSize ToProto(WindowSize value) => value switch
    {
        WindowSize.Minute => Proto.WindowSize.Minute,
        WindowSize.Hour => Proto.WindowSize.Hour,
        WindowSize.Day => Proto.WindowSize.Day,
        WindowSize.Month => Proto.WindowSize.Month,
        _ => Proto.WindowSize.Unspecified,
    };

    public static Proto.Aggregation ToProto(Aggregation value) => value switch
    {
        Aggregation.Count => Proto.Aggregation.Count,
        Aggregation.Sum => Proto.Aggregation.Sum,
        Aggregation.Min => Proto.Aggregation.Min,
        Aggregation.Max => Proto.Aggregation.Max,
        Aggregation.Avg => Proto.Aggregation.Avg,
        Aggregation.Latest => Proto.Aggregation.Latest,
        Aggregation.UniqueCount => Proto.Aggregation.UniqueCount,
        Aggregation.TimeWeightedSum => Proto.Aggregation.TimeWeightedSum,
        _ => Proto.Aggregation.Unspecified,
    };

    /// <summary>An enum from its upper snake case text (UNIQUE_COUNT), in any letter case.</summary>
    public static TEnum ParseEnum<TEnum>(string? text, string name, bool required, List<string> errors) where TEnum : struct, Enum
    {
        if (string.IsNullOrEmpty(text))
        {
            if (required)
                errors.Add($"{name} is required.");
            return default;
        }
        foreach (var value in Enum.GetValues<TEnum>())
        {
            if (string.Equals(EnumText(value), text, StringComparison.OrdinalIgnoreCase))
                return value;
        }
        errors.Add($"{name} '{text}' is not one of {Names<TEnum>()}.");
        return default;
    }

    /// <summary>UNIQUE_COUNT for UniqueCount.</summary>
    public static string EnumText<TEnum>(TEnum value) where TEnum : struct, Enum
        => JsonNamingPolicy.SnakeCaseUpper.ConvertName(value.ToString());

    private static string Names<TEnum>() where TEnum : struct, Enum
        => string.Join(", ", Enum.GetValues<TEnum>().Select(EnumText));

    /// <summary>An exact decimal as text, as both transports carry it.</summary>
    public static string Number(decimal value) => value.ToString(CultureInfo.InvariantCulture);
}
