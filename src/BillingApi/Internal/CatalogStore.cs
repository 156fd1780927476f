using AlphaMesh.Rating;
using Npgsql;

namespace AlphaMesh.BillingApi.Internal;

internal sealed record CustomerRow(string Id, string Name, string? Email, string Currency, string BillingTimezone, DateTime CreatedAt);

internal sealed record PlanRow(string Code, string Name, DateTime CreatedAt, int LatestVersion);

internal sealed record PlanVersionRow(string PlanCode, int Version, string Currency, string Definition, DateTime CreatedAt)
{
    /// <summary>The stored definition as the rating library's plan version (it was validated when stored).</summary>
    public PlanVersion ToPlanVersion()
    {
        var errors = new List<(string, string)>();
        return PlanDefinition.FromStoredJson(Definition).ToPlanVersion(PlanCode, Version, _ => null, errors)
            ?? throw new InvalidOperationException($"stored plan {PlanCode} v{Version} is not valid: {string.Join("; ", errors)}");
    }
}

internal sealed record PhaseRow(int Phase, string PlanCode, int PlanVersion, DateOnly StartsOn, DateOnly? EndsOn);

internal sealed record SubscriptionRow(string Id, string CustomerId, DateOnly StartDate, DateOnly BillingAnchor, DateOnly? EndDate,
    bool CancelAtPeriodEnd, DateTime CreatedAt, IReadOnlyList<PhaseRow> Phases);

internal sealed record BillingSettingsRow(RoundingMode Rounding, int GracePeriodDays);

/// <summary>The catalog's SQL. Every statement is filtered by the tenant, so another tenant's row is simply not found.</summary>
internal static class CatalogStore
{
    public static NpgsqlCommand Command(NpgsqlConnection connection, string sql, params object?[] args)
    {
        var command = new NpgsqlCommand(sql, connection);
        foreach (var arg in args)
            command.Parameters.Add(new NpgsqlParameter { Value = arg ?? DBNull.Value });
        return command;
    }

    public static async Task<List<T>> ReadAllAsync<T>(NpgsqlCommand command, Func<NpgsqlDataReader, T> read, CancellationToken cancellationToken)
    {
        var rows = new List<T>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
            rows.Add(read(reader));
        return rows;
    }

    // Settings

    public static async Task<BillingSettingsRow> GetSettingsAsync(NpgsqlConnection connection, string tenant, CancellationToken cancellationToken)
    {
        await using var command = Command(connection, "SELECT rounding_mode, grace_period_days FROM tenant_billing_settings WHERE tenant_id = $1", tenant);
        var rows = await ReadAllAsync(command, r => new BillingSettingsRow(ParseRounding(r.GetString(0))!.Value, r.GetInt32(1)), cancellationToken);
        return rows.Count == 1 ? rows[0] : new BillingSettingsRow(RoundingMode.HalfEven, 0);
    }

    public static async Task<BillingSettingsRow> SetSettingsAsync(NpgsqlConnection connection, string tenant, BillingSettingsRow settings,
        CancellationToken cancellationToken)
    {
        await using var command = Command(connection, """
            INSERT INTO tenant_billing_settings (tenant_id, rounding_mode, grace_period_days) VALUES ($1, $2, $3)
            ON CONFLICT (tenant_id) DO UPDATE SET rounding_mode = excluded.rounding_mode, grace_period_days = excluded.grace_period_days
            """, tenant, FormatRounding(settings.Rounding), settings.GracePeriodDays);
        await command.ExecuteNonQueryAsync(cancellationToken);
        return settings;
    }

    public static RoundingMode? ParseRounding(string? text) => text switch
    {
        "half_even" => RoundingMode.HalfEven,
        "half_up" => RoundingMode.HalfUp,
        "up" => RoundingMode.Up,
        "down" => RoundingMode.Down,
        _ => null,
    };

    public static string FormatRounding(RoundingMode mode) => mode switch
    {
        RoundingMode.HalfUp => "half_up",
        RoundingMode.Up => "up",
        RoundingMode.Down => "down",
        _ => "half_even",
    };

    // Customers

    private const string CustomerColumns = "id, name, email, currency, billing_timezone, created_at";

    private static CustomerRow ReadCustomer(NpgsqlDataReader r) => new(r.GetString(0), r.GetString(1), r.IsDBNull(2) ? null : r.GetString(2),
        r.GetString(3), r.GetString(4), r.GetDateTime(5));

    /// <summary>Null when the id is taken.</summary>
    public static async Task<CustomerRow?> CreateCustomerAsync(NpgsqlConnection connection, string tenant, CustomerRow customer, CancellationToken cancellationToken)
    {
        await using var command = Command(connection, $"""
            INSERT INTO customers (tenant_id, id, name, email, currency, billing_timezone) VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (tenant_id, id) DO NOTHING RETURNING {CustomerColumns}
            """, tenant, customer.Id, customer.Name, customer.Email, customer.Currency, customer.BillingTimezone);
        var rows = await ReadAllAsync(command, ReadCustomer, cancellationToken);
        return rows.Count == 1 ? rows[0] : null;
    }

    public static async Task<CustomerRow?> GetCustomerAsync(NpgsqlConnection connection, string tenant, string id, CancellationToken cancellationToken)
    {
        await using var command = Command(connection, $"SELECT {CustomerColumns} FROM customers WHERE tenant_id = $1 AND id = $2", tenant, id);
        var rows = await ReadAllAsync(command, ReadCustomer, cancellationToken);
        return rows.Count == 1 ? rows[0] : null;
    }

    public static async Task<List<CustomerRow>> ListCustomersAsync(NpgsqlConnection connection, string tenant, string? after, int limit, CancellationToken cancellationToken)
    {
        await using var command = Command(connection, $"""
            SELECT {CustomerColumns} FROM customers WHERE tenant_id = $1 AND ($2::text IS NULL OR id > $2) ORDER BY id LIMIT $3
            """, tenant, after, limit);
        return await ReadAllAsync(command, ReadCustomer, cancellationToken);
    }

    // Plans

    private const string PlanSelect = """
        SELECT p.code, p.name, p.created_at, (SELECT max(version) FROM plan_versions v WHERE v.tenant_id = p.tenant_id AND v.plan_code = p.code)
        FROM plans p
        """;

    private static PlanRow ReadPlan(NpgsqlDataReader r) => new(r.GetString(0), r.GetString(1), r.GetDateTime(2), r.GetInt32(3));

    /// <summary>False when the code is taken.</summary>
    public static async Task<bool> CreatePlanAsync(NpgsqlConnection connection, string tenant, string code, string name, CancellationToken cancellationToken)
    {
        await using var command = Command(connection, "INSERT INTO plans (tenant_id, code, name) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING", tenant, code, name);
        return await command.ExecuteNonQueryAsync(cancellationToken) == 1;
    }

    public static async Task<PlanRow?> GetPlanAsync(NpgsqlConnection connection, string tenant, string code, CancellationToken cancellationToken)
    {
        await using var command = Command(connection, PlanSelect + " WHERE p.tenant_id = $1 AND p.code = $2", tenant, code);
        var rows = await ReadAllAsync(command, ReadPlan, cancellationToken);
        return rows.Count == 1 ? rows[0] : null;
    }

    public static async Task<List<PlanRow>> ListPlansAsync(NpgsqlConnection connection, string tenant, string? after, int limit, CancellationToken cancellationToken)
    {
        await using var command = Command(connection, PlanSelect + " WHERE p.tenant_id = $1 AND ($2::text IS NULL OR p.code > $2) ORDER BY p.code LIMIT $3",
            tenant, after, limit);
        return await ReadAllAsync(command, ReadPlan, cancellationToken);
    }

    /// <summary>Adds the next version of the plan. The plan row is locked first, so two concurrent additions get
    /// consecutive numbers instead of one failing.</summary>
    public static async Task<PlanVersionRow> AddVersionAsync(NpgsqlConnection connection, string tenant, string planCode, PlanDefinition definition,
        CancellationToken cancellationToken)
    {
        await using (var lockPlan = Command(connection, "SELECT 1 FROM plans WHERE tenant_id = $1 AND code = $2 FOR UPDATE", tenant, planCode))
            await lockPlan.ExecuteNonQueryAsync(cancellationToken);
        int next;
        await using (var max = Command(connection, "SELECT coalesce(max(version), 0) + 1 FROM plan_versions WHERE tenant_id = $1 AND plan_code = $2", tenant, planCode))
            next = Convert.ToInt32(await max.ExecuteScalarAsync(cancellationToken), System.Globalization.CultureInfo.InvariantCulture);
        await using var insert = Command(connection, """
            INSERT INTO plan_versions (tenant_id, plan_code, version, currency, definition) VALUES ($1, $2, $3, $4, $5::jsonb)
            RETURNING plan_code, version, currency, definition::text, created_at
            """, tenant, planCode, next, definition.Currency, definition.ToStoredJson());
        return (await ReadAllAsync(insert, ReadVersion, cancellationToken))[0];
    }

    private static PlanVersionRow ReadVersion(NpgsqlDataReader r) => new(r.GetString(0), r.GetInt32(1), r.GetString(2), r.GetString(3), r.GetDateTime(4));

    public static async Task<PlanVersionRow?> GetVersionAsync(NpgsqlConnection connection, string tenant, string planCode, int? version,
        CancellationToken cancellationToken)
    {
        await using var command = Command(connection, """
            SELECT plan_code, version, currency, definition::text, created_at FROM plan_versions
            WHERE tenant_id = $1 AND plan_code = $2 AND ($3::integer IS NULL OR version = $3) ORDER BY version DESC LIMIT 1
            """, tenant, planCode, version);
        var rows = await ReadAllAsync(command, ReadVersion, cancellationToken);
        return rows.Count == 1 ? rows[0] : null;
    }

    public static async Task<List<PlanVersionRow>> ListVersionsAsync(NpgsqlConnection connection, string tenant, string planCode, CancellationToken cancellationToken)
    {
        await using var command = Command(connection, """
            SELECT plan_code, version, currency, definition::text, created_at FROM plan_versions WHERE tenant_id = $1 AND plan_code = $2 ORDER BY version
            """, tenant, planCode);
        return await ReadAllAsync(command, ReadVersion, cancellationToken);
    }

    // Subscriptions

    public static async Task CreateSubscriptionAsync(NpgsqlConnection connection, string tenant, string id, string customer, string planCode,
        int planVersion, DateOnly start, DateOnly anchor, CancellationToken cancellationToken)
    {
        await using (var insert = Command(connection, """
            INSERT INTO subscriptions (tenant_id, id, customer_id, start_date, billing_anchor) VALUES ($1, $2, $3, $4, $5)
            """, tenant, id, customer, start, anchor))
            await insert.ExecuteNonQueryAsync(cancellationToken);
        await using var phase = Command(connection, """
            INSERT INTO subscription_phases (tenant_id, subscription_id, phase, plan_code, plan_version, starts_on) VALUES ($1, $2, 1, $3, $4, $5)
            """, tenant, id, planCode, planVersion, start);
        await phase.ExecuteNonQueryAsync(cancellationToken);
    }

    private const string SubscriptionColumns = "id, customer_id, start_date, billing_anchor, end_date, cancel_at_period_end, created_at";

    /// <summary>The subscription and its phases; <paramref name="forUpdate"/> locks its row for a change.</summary>
    public static async Task<SubscriptionRow?> GetSubscriptionAsync(NpgsqlConnection connection, string tenant, string id, bool forUpdate,
        CancellationToken cancellationToken)
    {
        var rows = await ListSubscriptionsAsync(connection, tenant, "id = $2", id, 1, forUpdate, cancellationToken);
        return rows.Count == 1 ? rows[0] : null;
    }

    public static Task<List<SubscriptionRow>> ListSubscriptionsAsync(NpgsqlConnection connection, string tenant, string? customer, string? after,
        int limit, CancellationToken cancellationToken) =>
        ListSubscriptionsAsync(connection, tenant, "($2::text IS NULL OR customer_id = $2) AND ($3::text IS NULL OR id > $3)", customer, limit,
            forUpdate: false, cancellationToken, after);

    private static async Task<List<SubscriptionRow>> ListSubscriptionsAsync(NpgsqlConnection connection, string tenant, string filter, object? value,
        int limit, bool forUpdate, CancellationToken cancellationToken, string? after = null)
    {
        var args = new List<object?> { tenant, value };
        if (filter.Contains("$3", StringComparison.Ordinal))
            args.Add(after);
        args.Add(limit);
        var heads = new List<SubscriptionRow>();
        await using (var command = Command(connection, $"""
            SELECT {SubscriptionColumns} FROM subscriptions WHERE tenant_id = $1 AND {filter} ORDER BY id LIMIT ${args.Count}{(forUpdate ? " FOR UPDATE" : "")}
            """, [.. args]))
            heads = await ReadAllAsync(command, r => new SubscriptionRow(r.GetString(0), r.GetString(1), r.GetFieldValue<DateOnly>(2),
                r.GetFieldValue<DateOnly>(3), r.IsDBNull(4) ? null : r.GetFieldValue<DateOnly>(4), r.GetBoolean(5), r.GetDateTime(6), []), cancellationToken);
        if (heads.Count == 0)
            return heads;
        await using var phases = Command(connection, """
            SELECT subscription_id, phase, plan_code, plan_version, starts_on, ends_on FROM subscription_phases
            WHERE tenant_id = $1 AND subscription_id = ANY($2) ORDER BY subscription_id, phase
            """, tenant, heads.Select(h => h.Id).ToArray());
        var byId = (await ReadAllAsync(phases, r => (Id: r.GetString(0), Phase: new PhaseRow(r.GetInt32(1), r.GetString(2), r.GetInt32(3),
            r.GetFieldValue<DateOnly>(4), r.IsDBNull(5) ? null : r.GetFieldValue<DateOnly>(5))), cancellationToken)).ToLookup(p => p.Id, p => p.Phase);
        return heads.Select(h => h with { Phases = byId[h.Id].ToList() }).ToList();
    }

    /// <summary>The subscriptions with these ids (those that exist), ordered by id, with their phases.</summary>
    public static Task<List<SubscriptionRow>> LoadSubscriptionsAsync(NpgsqlConnection connection, string tenant, string[] ids, CancellationToken cancellationToken) =>
        ListSubscriptionsAsync(connection, tenant, "id = ANY($2::text[])", ids, ids.Length, forUpdate: false, cancellationToken);

    public static async Task SetEndAsync(NpgsqlConnection connection, string tenant, string id, DateOnly end, bool atPeriodEnd, CancellationToken cancellationToken)
    {
        await using (var command = Command(connection, "UPDATE subscriptions SET end_date = $3, cancel_at_period_end = $4 WHERE tenant_id = $1 AND id = $2",
            tenant, id, end, atPeriodEnd))
            await command.ExecuteNonQueryAsync(cancellationToken);
        // A phase that started on or after the end never served a day: it goes; the phase serving the end day is closed.
        await using (var drop = Command(connection, "DELETE FROM subscription_phases WHERE tenant_id = $1 AND subscription_id = $2 AND starts_on >= $3 AND phase > 1",
            tenant, id, end))
            await drop.ExecuteNonQueryAsync(cancellationToken);
        await using var close = Command(connection, """
            UPDATE subscription_phases SET ends_on = $3 WHERE tenant_id = $1 AND subscription_id = $2 AND starts_on < $3 AND (ends_on IS NULL OR ends_on > $3)
            """, tenant, id, end);
        await close.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>Closes the open phase on <paramref name="on"/> and opens one on the new plan version from that day.</summary>
    public static async Task ChangePlanAsync(NpgsqlConnection connection, string tenant, SubscriptionRow subscription, string planCode, int version,
        DateOnly on, CancellationToken cancellationToken)
    {
        var open = subscription.Phases[^1];
        await using (var close = Command(connection, "UPDATE subscription_phases SET ends_on = $4 WHERE tenant_id = $1 AND subscription_id = $2 AND phase = $3",
            tenant, subscription.Id, open.Phase, on))
            await close.ExecuteNonQueryAsync(cancellationToken);
        await using var insert = Command(connection, """
            INSERT INTO subscription_phases (tenant_id, subscription_id, phase, plan_code, plan_version, starts_on, ends_on) VALUES ($1, $2, $3, $4, $5, $6, $7)
            """, tenant, subscription.Id, open.Phase + 1, planCode, version, on, subscription.EndDate);
        await insert.ExecuteNonQueryAsync(cancellationToken);
    }
}
