using System.Net;
using System.Text.Json.Nodes;

namespace AlphaMesh.Server.Tests.Support;

/// <summary>Walks a cursor-paginated list endpoint of the billing API to its end.</summary>
internal static class Paging
{
    /// <summary>
    /// Asks for <paramref name="firstPage"/>, then for each <c>nextCursor</c> (appended as <c>&amp;cursor=</c>) until
    /// there is none; every page must answer 200. Returns the ids of every page's items in order, and the page count.
    /// </summary>
    public static async Task<(List<string> Ids, int Pages)> ReadAllAsync(string firstPage,
        Func<string, Task<(HttpStatusCode Status, JsonNode? Body)>> get)
    {
        var ids = new List<string>();
        string? cursor = null;
        int pages = 0;
        do
        {
            var (status, body) = await get(firstPage + (cursor is null ? "" : "&cursor=" + cursor));
            Assert.True(status == HttpStatusCode.OK, $"page {pages + 1}: {status} {body?.ToJsonString()}");
            ids.AddRange(body!["data"]!.AsArray().Select(item => item!["id"]!.GetValue<string>()));
            cursor = body["nextCursor"]?.GetValue<string>();
            pages++;
        }
        while (cursor is not null);
        return (ids, pages);
    }
}
