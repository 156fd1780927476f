using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Validators;

namespace AlphaMesh.Rating.Benchmarks;

/// <summary>The one config of the rating benchmarks: memory diagnoser, JIT optimisation check, server GC, a short job.</summary>
internal static class RatingBenchmarkConfig
{
    public static IConfig Create() => DefaultConfig.Instance
        .AddDiagnoser(MemoryDiagnoser.Default)
        .AddValidator(JitOptimizationsValidator.FailOnError)
        .AddJob(Job.Default
            .WithGcServer(true)
            .WithLaunchCount(1)
            .WithWarmupCount(5)
            .WithIterationCount(15)
            .WithId("short"));
}
