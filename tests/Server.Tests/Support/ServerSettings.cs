namespace AlphaMesh.Server.Tests.Support;

/// <summary>Command-line settings for a test server on free loopback ports and a private data directory.</summary>
internal sealed class ServerSettings
{
    public const string IngestKey = "amk_test_ingest_and_everything_else_0123456789";
    public const string ReadOnlyKey = "amk_test_read_only_0123456789abcdef";
    public const string OtherTenantKey = "amk_test_other_tenant_0123456789abcdef";
    public const string IngestOnlyKey = "amk_test_ingest_only_0123456789abcdef";

    public ServerSettings(string dataDirectory)
    {
        DataDirectory = dataDirectory;
        RestPort = Ports.GetFree();
        GrpcPort = Ports.GetFree();
    }

    public string DataDirectory { get; }
    public int RestPort { get; }
    public int GrpcPort { get; }
    public bool WithKeys { get; init; } = true;

    /// <summary>The billing database. By default the shared test database (migrations are safe to run from many servers at
    /// once); classes that use the billing API give each class its own (<see cref="AlphaMesh.Tests.Shared.TestDatabase"/>).</summary>
    public string BillingConnectionString { get; set; } = AlphaMesh.Tests.Shared.TestDatabase.AdminConnectionString;
    public Dictionary<string, string> Extra { get; } = [];

    public Uri RestAddress => new($"http://127.0.0.1:{RestPort}");
    public Uri GrpcAddress => new($"http://127.0.0.1:{GrpcPort}");

    public string[] ToArgs()
    {
        var args = new List<string>
        {
            "--data-dir", DataDirectory,
            $"--Kestrel:Endpoints:Rest:Url={RestAddress}",
            $"--Kestrel:Endpoints:Grpc:Url={GrpcAddress}",
            "--Logging:Console:FormatterName=simple",
            // Kestrel warns at every start that HTTP/2 on the REST endpoint needs TLS; known, and noise here.
            "--Logging:LogLevel:Microsoft.AspNetCore.Server.Kestrel=Error",
            $"--AlphaMesh:Billing:ConnectionString={BillingConnectionString}",
        };
        if (WithKeys)
        {
            args.Add($"--ALPHAMESH_BOOTSTRAP_KEY={IngestKey}");
            args.Add("--AlphaMesh:BootstrapTenant=acme");
            AddKey(args, 0, "acme", ReadOnlyKey, "read");
            AddKey(args, 1, "globex", OtherTenantKey, "ingest,read");
            AddKey(args, 2, "acme", IngestOnlyKey, "ingest");
        }
        foreach (var (key, value) in Extra)
            args.Add($"--{key}={value}");
        return [.. args];
    }

    private static void AddKey(List<string> args, int index, string tenant, string key, string scopes)
    {
        args.Add($"--AlphaMesh:ApiKeys:{index}:Tenant={tenant}");
        args.Add($"--AlphaMesh:ApiKeys:{index}:Sha256={Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(key)))}");
        args.Add($"--AlphaMesh:ApiKeys:{index}:Scopes={scopes}");
    }
}
