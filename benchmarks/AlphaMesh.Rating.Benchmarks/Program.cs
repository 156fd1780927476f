using BenchmarkDotNet.Running;
using AlphaMesh.Rating.Benchmarks;

BenchmarkSwitcher.FromAssembly(typeof(RatingBenchmarks).Assembly).Run(args, RatingBenchmarkConfig.Create());
