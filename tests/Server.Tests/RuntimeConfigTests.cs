using System.Text.Json;

namespace AlphaMesh.Server.Tests;

/// <summary>The runtime settings the server process starts with: its runtimeconfig.json, which `dotnet
/// AlphaMesh.Server.dll` reads and the server's CPU per event depends on (benchmarks/RESULTS.md).</summary>
public sealed class RuntimeConfigTests
{
    [Fact]
    public void ServerRuntimeConfig_Built_CompilesOptimizedAtOnceOnServerGcWithoutSpinningWorkers()
    {
        var path = Path.Combine(AppContext.BaseDirectory, "AlphaMesh.Server.runtimeconfig.json");
        using var document = JsonDocument.Parse(File.ReadAllText(path));
        var properties = document.RootElement.GetProperty("runtimeOptions").GetProperty("configProperties");

        Assert.False(properties.GetProperty("System.Runtime.TieredCompilation").GetBoolean());
        Assert.True(properties.GetProperty("System.GC.Server").GetBoolean());
        Assert.False(properties.GetProperty("System.GC.Concurrent").GetBoolean());
        Assert.Equal(0, properties.GetProperty("System.Threading.ThreadPool.UnfairSemaphoreSpinLimit").GetInt32());
    }
}
