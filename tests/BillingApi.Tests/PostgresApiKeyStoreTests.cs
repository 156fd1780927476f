using AlphaMesh.BillingApi.Internal;
using AlphaMesh.Ingest;
using AlphaMesh.Tests.Shared;

namespace AlphaMesh.BillingApi.Tests;

/// <summary>One database for the class; every test makes its own keys, so they do not see each other's changes as theirs.</summary>
public sealed class PostgresApiKeyStoreTests(TestDatabase database) : IClassFixture<TestDatabase>, IAsyncLifetime
{
    private const string ConfiguredKey = "amk_configured_key_0123456789";
    private BillingDatabase _billing = null!;
    private TenantStore _store = null!;

    public async Task InitializeAsync()
    {
        _billing = await TestSupport.OpenAsync(database);
        _store = new TenantStore(_billing);
        await _store.EnsureTenantsAsync(["acme", "globex"], default);
    }

    public async Task DisposeAsync() => await _billing.DisposeAsync();

    private static StoredApiKey Configured(string tenant, string key, ApiScopes scopes)
        => new(ApiKey.Hash(key), new ApiPrincipal(tenant, scopes, ApiKey.DisplayPrefix(key)));

    private Task<PostgresApiKeyStore> StartStoreAsync()
        => PostgresApiKeyStore.StartAsync(_store, [Configured("acme", ConfiguredKey, ApiScopes.All)], ["operator"], default);

    private async Task<(string Key, ApiKeyRow Row)> IssueAsync(string tenant, ApiScopes scopes)
    {
        var key = ApiKey.Generate();
        await using var connection = await _billing.DataSource.OpenConnectionAsync();
        return (key, await TenantStore.CreateKeyAsync(connection, tenant, "test", scopes, key, default));
    }

    [Fact]
    public async Task StartAsync_ConfiguredKey_AuthenticatesAndItsTenantExists()
    {
        var keys = await StartStoreAsync();

        Assert.True(keys.TryAuthenticate(ConfiguredKey, out var principal));
        Assert.Equal(("acme", ApiScopes.All), (principal!.TenantId, principal.Scopes));
        Assert.NotNull(await _store.GetTenantAsync("acme", default));
        Assert.NotNull(await _store.GetTenantAsync("operator", default));
    }

    [Fact]
    public async Task RefreshAsync_KeyIssuedInDatabase_AuthenticatesWithItsScopes()
    {
        var keys = await StartStoreAsync();
        var (key, _) = await IssueAsync("acme", ApiScopes.Ingest | ApiScopes.Read);
        Assert.False(keys.TryAuthenticate(key, out _));

        await keys.RefreshAsync(default);

        Assert.True(keys.TryAuthenticate(key, out var principal));
        Assert.Equal(("acme", ApiScopes.Ingest | ApiScopes.Read, key[..8]), (principal!.TenantId, principal.Scopes, principal.KeyPrefix));
        Assert.False(keys.TryAuthenticate(key + "x", out _));
    }

    [Fact]
    public async Task RefreshAsync_KeyRevokedThroughAnotherStore_StopsAuthenticating()
    {
        var here = await StartStoreAsync();
        var (key, row) = await IssueAsync("acme", ApiScopes.Ingest);
        await here.RefreshAsync(default);
        Assert.True(here.TryAuthenticate(key, out _));

        // "Another server": the revocation goes straight to the database.
        Assert.NotNull(await _store.RevokeKeyAsync("acme", row.Id, default));
        await here.RefreshAsync(default);

        Assert.False(here.TryAuthenticate(key, out _));
        Assert.True(here.TryAuthenticate(ConfiguredKey, out _));
    }

    [Fact]
    public async Task RevokeKeyAsync_Twice_KeepsTheFirstRevocationTime()
    {
        var (_, row) = await IssueAsync("acme", ApiScopes.Read);

        var first = await _store.RevokeKeyAsync("acme", row.Id, default);
        var second = await _store.RevokeKeyAsync("acme", row.Id, default);

        Assert.NotNull(first!.RevokedAt);
        Assert.Equal(first.RevokedAt, second!.RevokedAt);
    }

    [Fact]
    public async Task RevokeKeyAsync_KeyOfAnotherTenant_ReturnsNullAndLeavesItActive()
    {
        var keys = await StartStoreAsync();
        var (key, row) = await IssueAsync("acme", ApiScopes.Read);

        Assert.Null(await _store.RevokeKeyAsync("globex", row.Id, default));
        await keys.RefreshAsync(default);

        Assert.True(keys.TryAuthenticate(key, out _));
    }

    [Fact]
    public async Task LoadActiveKeysAsync_Stored_HoldsOnlyTheHashNeverTheKey()
    {
        var (key, row) = await IssueAsync("acme", ApiScopes.Read);

        await using var command = _billing.DataSource.CreateCommand($"SELECT sha256, prefix FROM api_keys WHERE id = '{row.Id}'");
        await using var reader = await command.ExecuteReaderAsync();
        Assert.True(await reader.ReadAsync());

        Assert.Equal(ApiKey.Hash(key), reader.GetFieldValue<byte[]>(0));
        Assert.Equal(key[..8], reader.GetString(1));
    }
}
