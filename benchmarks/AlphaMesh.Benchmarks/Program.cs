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

BenchmarkSwitcher.FromAssembly(typeof(BenchmarkConfig).Assembly).Run(args, new BenchmarkConfig());
return 0;
