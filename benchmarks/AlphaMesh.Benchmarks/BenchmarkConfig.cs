using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Validators;

namespace AlphaMesh.Benchmarks;

/// <summary>
/// The one configuration every AlphaMesh benchmark runs with: allocations measured (MemoryDiagnoser), Server GC as
/// the server runs, and a refusal to measure unoptimized code. Given to the runner by Program (not as a
/// [Config] attribute, so that --check-budget can replace the job). Per-event figures come from
/// <c>OperationsPerInvoke = <see cref="Batch.Events"/></c> on each ingest benchmark; the rating benchmarks are one
/// operation (a charge or an invoice) per call.
/// </summary>
public sealed class BenchmarkConfig : ManualConfig
{
    public BenchmarkConfig()
        : this(Job.Default)
    {
    }

    /// <param name="job">The job (its run counts); the shared settings are applied to it.</param>
    public BenchmarkConfig(Job job)
    {
        Add(DefaultConfig.Instance);
        AddJob(job.WithGcServer(true).WithGcConcurrent(false).AsDefault());
        AddDiagnoser(MemoryDiagnoser.Default);
        AddValidator(JitOptimizationsValidator.FailOnError);
        AddLogicalGroupRules(BenchmarkLogicalGroupRule.ByCategory);
        WithOptions(ConfigOptions.JoinSummary);
        // The generated project's build got past BenchmarkDotNet's 2 minutes once on a busy 2-core machine (the
        // allocation budget step of a CI run failed without measuring anything).
        WithBuildTimeout(TimeSpan.FromMinutes(10));
    }
}

/// <summary>Benchmark categories (<c>--anyCategories</c> on the command line).</summary>
public static class Categories
{
    /// <summary>Request bytes to log records (the server's parse step).</summary>
    public const string Parse = "Parse";

    /// <summary>Parse plus append to the FasterLog event log.</summary>
    public const string Append = "Append";

    /// <summary>The client SDK's batch encoding.</summary>
    public const string Client = "Client";

    /// <summary>Dedupe and aggregation by a partition's aggregator.</summary>
    public const string Aggregate = "Aggregate";

    /// <summary>The rating library: one charge, one invoice (per operation, not per event).</summary>
    public const string Rating = "Rating";
}
