namespace AlphaMesh.Server.Tests.Support;

/// <summary>Waiting for something another thread or process makes true.</summary>
internal static class Wait
{
    /// <summary>Polls <paramref name="condition"/> every 50 ms for up to 30 s; false if it never held.</summary>
    public static async Task<bool> UntilAsync(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
                return false;
            await Task.Delay(50);
        }
        return true;
    }
}
