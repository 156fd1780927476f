namespace AlphaMesh.Ingest;

/// <summary>
/// The codes of per-event rejections in an ingest reply (<c>Rejection.code</c> on gRPC, <c>rejected[].code</c>
/// over HTTP). Part of the wire contract: clients branch on them, so they never change meaning.
/// </summary>
public static class RejectionCodes
{
    public const string MissingId = "missing_id";
    public const string IdTooLong = "id_too_long";
    public const string MissingType = "missing_type";
    public const string TypeTooLong = "type_too_long";
    public const string MissingCustomer = "missing_customer";
    public const string CustomerTooLong = "customer_too_long";
    public const string TimeTooOld = "time_too_old";
    public const string TimeInFuture = "time_in_future";
    public const string InvalidTime = "invalid_time";
    public const string InvalidNumber = "invalid_number";
    public const string TooManyDataEntries = "too_many_data_entries";
    public const string DataKeyTooLong = "data_key_too_long";
    public const string DataValueTooLong = "data_value_too_long";
    public const string EmptyDataKey = "empty_data_key";
    public const string InvalidUtf8 = "invalid_utf8";
    public const string InvalidData = "invalid_data";
    public const string DuplicateDataKey = "duplicate_data_key";
}
