using AlphaMesh.Benchmarks;
using BenchmarkDotNet.Running;

// Default: BenchmarkDotNet's switcher (--filter, --anyCategories, --list, ...).
// --check-budget [path]: runs the benchmarks named in allocation-budget.json with a short job and exits 1
// if one allocates more per operation than it is allowed.
if (args.Length > 0 && args[0] == "--check-budget")
{
    string path = args.Length > 1 ? args[1] : Path.Combine(AppContext.BaseDirectory, "allocation-budget.json");
    return AllocationBudget.Check(path, Console.Out);
}

// --aggregate-rate [millions] [meters] [dedupe index MiB]: applies that many million new events (default 10) with
// the aggregate benchmark's setup (1 or 3 meters, default 1; dedupe index 256 MiB by default) on one thread and
// prints the rate of every million: the sustained per-partition rate as the dedupe store grows past its memory,
// which a BenchmarkDotNet iteration is too short to show.
if (args.Length > 0 && args[0] == "--aggregate-rate")
{
    int Arg(int index, int fallback) => args.Length > index ? int.Parse(args[index], System.Globalization.CultureInfo.InvariantCulture) : fallback;
    return AggregateBenchmarks.RunSustained(Arg(1, 10), Arg(2, 1), Arg(3, 256) * (1L << 20), Console.Out);
}

// --recovery [millions], --entitlement-latency [seconds], --list-reached [customers] [cached windows] and --late-events
// [customers]: see AggregatorRuns.
if (args.Length > 0 && args[0] == "--recovery")
    return await AggregatorRuns.RecoveryAsync(args.Length > 1 ? int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 10, Console.Out);
if (args.Length > 0 && args[0] == "--list-reached")
    return await AggregatorRuns.ListReachedAsync(args.Length > 1 ? int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 1_000_000,
        args.Length > 2 ? int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture) : null, Console.Out);
if (args.Length > 0 && args[0] == "--late-events")
    return await AggregatorRuns.LateEventsAsync(args.Length > 1 ? int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 1_000_000, Console.Out);
if (args.Length > 0 && args[0] == "--entitlement-latency")
    return await AggregatorRuns.EntitlementLatencyAsync(args.Length > 1 ? int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 10, Console.Out);

// --billing-run [subscriptions]: see BillingRunBenchmark (default 100,000).
if (args.Length > 0 && args[0] == "--billing-run")
    return await BillingRunBenchmark.RunAsync(args.Length > 1 ? int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 100_000, Console.Out);

// --webhooks [events] [rate] [seconds] [concurrency]: see WebhookRuns.
if (args.Length > 0 && args[0] == "--webhooks")
{
    int Arg(int index, int fallback) => args.Length > index ? int.Parse(args[index], System.Globalization.CultureInfo.InvariantCulture) : fallback;
    return await WebhookRuns.RunAsync(Arg(1, 20_000), Arg(2, 200), Arg(3, 10), Arg(4, 8), Console.Out);
}

BenchmarkSwitcher.FromAssembly(typeof(BenchmarkConfig).Assembly).Run(args, new BenchmarkConfig());
return 0;
