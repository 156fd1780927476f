using System.Globalization;

namespace AlphaMesh.PeerBaselines;

/// <summary>One generated event. A duplicate is a copy of an earlier event: same id, customer, time and amount.</summary>
/// <param name="Id">The event id (a UUID in text form), the idempotency key every system dedupes on.</param>
/// <param name="Customer">Index into <see cref="EventSet.Customers"/>.</param>
/// <param name="AmountMinor">The amount in hundredths (the SUM meter's value is <c>AmountMinor / 100</c>).</param>
/// <param name="SecondsAfterBase">The event's time, in seconds after <see cref="EventSet.BaseTime"/>.</param>
internal readonly record struct GeneratedEvent(string Id, int Customer, int AmountMinor, int SecondsAfterBase);

/// <summary>One customer's usage: the COUNT and the SUM of the amounts of its distinct events.</summary>
internal readonly record struct CustomerUsage(long Count, decimal Sum);

/// <summary>
/// The events every system gets, made from a seed so that each phase of a run (one process per system) makes the
/// very same ones: <c>count</c> events over <c>customers</c> customers, each one with probability
/// <c>duplicateRate</c> a copy of an earlier event (a client's retry), the rest new. Also the oracle: usage per
/// customer counting each event id once.
/// </summary>
internal sealed class EventSet
{
    /// <summary>Amounts are 0.01 to 100.00: two decimals, so a system without a decimal type can sum exactly in hundredths.</summary>
    public const int MaxAmountMinor = 10_000;

    /// <summary>The events spread over one hour after <see cref="BaseTime"/>.</summary>
    public const int TimeSpreadSeconds = 3600;

    private static readonly string[] s_amountText = MakeAmountText();

    private EventSet(GeneratedEvent[] events, string[] customers, DateTimeOffset baseTime, int duplicates, Dictionary<string, CustomerUsage> oracle)
    {
        Events = events;
        Customers = customers;
        BaseTime = baseTime;
        Duplicates = duplicates;
        Oracle = oracle;
    }

    public GeneratedEvent[] Events { get; }
    public string[] Customers { get; }
    public DateTimeOffset BaseTime { get; }

    /// <summary>How many of <see cref="Events"/> repeat an earlier event's id.</summary>
    public int Duplicates { get; }

    /// <summary>Events with an id not seen before: what an exact system counts.</summary>
    public int Distinct => Events.Length - Duplicates;

    /// <summary>The expected usage per customer (customers without events are absent).</summary>
    public IReadOnlyDictionary<string, CustomerUsage> Oracle { get; }

    /// <summary>The amount as the decimal text sent to systems that take text (<c>"12.5"</c>, <c>"0.07"</c>).</summary>
    public static string AmountText(int amountMinor) => s_amountText[amountMinor];

    public static decimal Amount(int amountMinor) => amountMinor / 100m;

    public DateTimeOffset TimeOf(in GeneratedEvent e) => BaseTime.AddSeconds(e.SecondsAfterBase);

    public static EventSet Generate(int count, int customers, double duplicateRate, int seed, DateTimeOffset baseTime)
    {
        if (count <= 0)
            throw new ArgumentOutOfRangeException(nameof(count), count, "the event count must be more than 0");
        if (customers <= 0)
            throw new ArgumentOutOfRangeException(nameof(customers), customers, "the customer count must be more than 0");
        if (duplicateRate is < 0 or >= 1 || double.IsNaN(duplicateRate))
            throw new ArgumentOutOfRangeException(nameof(duplicateRate), duplicateRate, "the duplicate rate must be at least 0 and below 1");

        var names = new string[customers];
        for (int i = 0; i < names.Length; i++)
            names[i] = "customer-" + i.ToString("D6", CultureInfo.InvariantCulture);

        var random = new Random(seed);
        var events = new GeneratedEvent[count];
        var counts = new long[customers];
        var sums = new long[customers];
        Span<byte> idBytes = stackalloc byte[16];
        int duplicates = 0;
        for (int i = 0; i < events.Length; i++)
        {
            if (i > 0 && random.NextDouble() < duplicateRate)
            {
                // A retry of any earlier event, near or far: dedupe must hold across batches, not only within one.
                events[i] = events[random.Next(i)];
                duplicates++;
                continue;
            }
            random.NextBytes(idBytes);
            int customer = random.Next(customers);
            int amount = random.Next(1, MaxAmountMinor + 1);
            events[i] = new GeneratedEvent(new Guid(idBytes).ToString(), customer, amount, random.Next(TimeSpreadSeconds));
            counts[customer]++;
            sums[customer] += amount;
        }

        var oracle = new Dictionary<string, CustomerUsage>(customers, StringComparer.Ordinal);
        for (int c = 0; c < customers; c++)
        {
            if (counts[c] > 0)
                oracle[names[c]] = new CustomerUsage(counts[c], sums[c] / 100m);
        }
        return new EventSet(events, names, baseTime, duplicates, oracle);
    }

    /// <summary>
    /// Indexes of the events each of <paramref name="lanes"/> parallel senders sends, in order. An event's lane follows
    /// from its customer, so every copy of an id goes through the same lane (a relational baseline needs that: two
    /// transactions inserting the same keys in different orders can deadlock).
    /// </summary>
    public int[][] Lanes(int lanes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(lanes, 1);
        var sizes = new int[lanes];
        foreach (var e in Events)
            sizes[e.Customer % lanes]++;
        var result = new int[lanes][];
        for (int l = 0; l < lanes; l++)
            result[l] = new int[sizes[l]];
        Array.Clear(sizes);
        for (int i = 0; i < Events.Length; i++)
        {
            int lane = Events[i].Customer % lanes;
            result[lane][sizes[lane]++] = i;
        }
        return result;
    }

    private static string[] MakeAmountText()
    {
        var text = new string[MaxAmountMinor + 1];
        for (int i = 0; i < text.Length; i++)
            text[i] = Amount(i).ToString(CultureInfo.InvariantCulture);
        return text;
    }
}
