using AlphaMesh.Ingest;
using AlphaMesh.Server.Tests.Support;
using Microsoft.Extensions.Configuration;

namespace AlphaMesh.Server.Tests;

public sealed class LocalApiKeysTests : IDisposable
{
    private readonly TempDirectory _data = new();

    public void Dispose() => _data.Dispose();

    private static IConfiguration Config(params (string Key, string Value)[] values)
        => new ConfigurationBuilder().AddInMemoryCollection(values.Select(v => new KeyValuePair<string, string?>(v.Key, v.Value))).Build();

    [Fact]
    public void Load_BootstrapVariable_GrantsAllScopesToTheBootstrapTenantAndWritesNoFile()
    {
        var loaded = LocalApiKeys.Load(Config(("ALPHAMESH_BOOTSTRAP_KEY", "my-automation-key"), ("AlphaMesh:BootstrapTenant", "acme")), _data.Path);

        Assert.True(loaded.Store.TryAuthenticate("my-automation-key", out var principal));
        Assert.Equal(("acme", ApiScopes.All), (principal!.TenantId, principal.Scopes));
        Assert.False(loaded.Store.TryAuthenticate("my-automation-kez", out _));
        Assert.Null(loaded.CreatedKeyFile);
        Assert.Empty(Directory.EnumerateFiles(_data.Path));
    }

    [Fact]
    public void Load_SecondStart_KeepsTheGeneratedKeyAndCreatesNoOther()
    {
        var first = LocalApiKeys.Load(Config(), _data.Path);
        var key = File.ReadAllText(first.CreatedKeyFile!).Trim();

        var second = LocalApiKeys.Load(Config(), _data.Path);

        Assert.Null(second.CreatedKeyFile);
        Assert.True(second.Store.TryAuthenticate(key, out var principal));
        Assert.Equal("default", principal!.TenantId);
    }

    [Theory]
    [InlineData("not-hex", "64 hex digits")]
    [InlineData("abcd", "64 hex digits")]
    public void Load_BadHash_FailsNamingTheTenantAndTheRule(string hash, string expected)
    {
        var error = Assert.Throws<InvalidOperationException>(() =>
            LocalApiKeys.Load(Config(("AlphaMesh:ApiKeys:0:Tenant", "acme"), ("AlphaMesh:ApiKeys:0:Sha256", hash)), _data.Path));

        Assert.Contains("acme", error.Message, StringComparison.Ordinal);
        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ParseScopes_UnknownScope_FailsNamingIt()
    {
        var error = Assert.Throws<FormatException>(() => ApiKey.ParseScopes("ingest,write"));
        Assert.Contains("'write'", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_ScopedKey_GrantsOnlyItsScopes()
    {
        const string key = "amk_scoped";
        var loaded = LocalApiKeys.Load(Config(
            ("AlphaMesh:ApiKeys:0:Tenant", "acme"),
            ("AlphaMesh:ApiKeys:0:Sha256", Convert.ToHexStringLower(ApiKey.Hash(key))),
            ("AlphaMesh:ApiKeys:0:Scopes", "read")), _data.Path);

        Assert.True(loaded.Store.TryAuthenticate(key, out var principal));
        Assert.True(principal!.Has(ApiScopes.Read));
        Assert.False(principal.Has(ApiScopes.Ingest));
    }
}
