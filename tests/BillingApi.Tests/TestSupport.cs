using AlphaMesh.BillingApi.Internal;
using AlphaMesh.Tests.Shared;
using Microsoft.Extensions.Logging.Abstractions;

namespace AlphaMesh.BillingApi.Tests;

internal static class TestSupport
{
    public static Task<BillingDatabase> OpenAsync(TestDatabase database)
        => BillingDatabase.OpenAsync(new BillingOptions { ConnectionString = database.ConnectionString }, "", NullLoggerFactory.Instance, default);

    /// <summary>Polls until the condition holds or the time is up; the assertion is the result, not a sleep.</summary>
    public static async Task<bool> EventuallyAsync(Func<bool> condition, TimeSpan within)
    {
        var deadline = DateTime.UtcNow + within;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
                return false;
            await Task.Delay(50);
        }
        return true;
    }

    /// <summary>Polls an asynchronous condition (a database query) until it holds or the time is up.</summary>
    public static async Task<bool> EventuallyAsync(Func<Task<bool>> condition, TimeSpan within)
    {
        var deadline = DateTime.UtcNow + within;
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline)
                return false;
            await Task.Delay(50);
        }
        return true;
    }
}
