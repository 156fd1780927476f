using System.Text.Json;
using BenchmarkDotNet.Filters;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;

namespace AlphaMesh.Benchmarks;

/// <summary>
/// Keeps the zero-allocation paths at zero: runs every benchmark listed in <c>allocation-budget.json</c> with a
/// short job and compares BenchmarkDotNet's allocated bytes per operation with the allowed figure.
/// </summary>
public static class AllocationBudget
{
    /// <summary>Returns the process exit code: 0 when every benchmark is within its budget, 1 otherwise.</summary>
    public static int Check(string budgetPath, TextWriter output)
    {
        var budget = Load(budgetPath);
        var types = typeof(BenchmarkConfig).Assembly.GetTypes()
            .Where(t => t.GetMethods().Any(m => budget.ContainsKey(t.Name + "." + m.Name)))
            .ToArray();
        var config = new BenchmarkConfig(Job.ShortRun)
            .AddFilter(new SimpleFilter(b => budget.ContainsKey(NameOf(b))));
        var summaries = BenchmarkRunner.Run(types, config);

        var failures = new List<string>();
        var measured = new HashSet<string>();
        foreach (var report in summaries.SelectMany(s => s.Reports))
        {
            string name = NameOf(report.BenchmarkCase);
            long? perOperation = report.Success ? report.GcStats.GetBytesAllocatedPerOperation(report.BenchmarkCase) : null;
            if (perOperation is null)
            {
                failures.Add($"{name}: no allocation figure (the benchmark failed)");
                continue;
            }
            measured.Add(name);
            long allowed = budget[name];
            double exact = (double)(report.GcStats.GetTotalAllocatedBytes(excludeAllocationQuantumSideEffects: true) ?? 0) / report.GcStats.TotalOperations;
            output.WriteLine($"allocation budget: {name}: {perOperation} B/op (exactly {exact:0.###}), allowed {allowed} B/op");
            if (perOperation > allowed)
                failures.Add($"{name}: {perOperation} B allocated per operation, allowed {allowed} B");
        }
        foreach (var name in budget.Keys.Where(n => !measured.Contains(n) && !failures.Any(f => f.StartsWith(n + ":", StringComparison.Ordinal))))
            failures.Add($"{name}: listed in the budget but no such benchmark ran");

        foreach (var failure in failures)
            output.WriteLine("ALLOCATION BUDGET EXCEEDED: " + failure);
        output.WriteLine(failures.Count == 0
            ? $"allocation budget: all {budget.Count} benchmarks within budget"
            : $"allocation budget: {failures.Count} of {budget.Count} benchmarks failed");
        return failures.Count == 0 ? 0 : 1;
    }

    private static string NameOf(BenchmarkCase benchmark)
        => benchmark.Descriptor.Type.Name + "." + benchmark.Descriptor.WorkloadMethod.Name;

    private static Dictionary<string, long> Load(string path)
    {
        using var stream = File.OpenRead(path);
        using var document = JsonDocument.Parse(stream);
        var budget = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var entry in document.RootElement.GetProperty("bytesPerOperation").EnumerateObject())
            budget[entry.Name] = entry.Value.GetInt64();
        return budget;
    }
}
