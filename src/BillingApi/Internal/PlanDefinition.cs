using System.Collections.Immutable;
using System.Text.Json;
using System.Text.Json.Serialization;
using AlphaMesh.Rating;

namespace AlphaMesh.BillingApi.Internal;

/// <summary>
/// A plan version as the API takes it and as it is stored (<c>plan_versions.definition</c>): the JSON form of the
/// rating library's <see cref="PlanVersion"/>. Decimals may be JSON numbers or strings on the way in and are
/// strings on the way out, so that no amount ever passes through a binary floating point.
/// </summary>
internal sealed class PlanDefinition
{
    public string? Currency { get; set; }

    /// <summary><c>monthly</c>, <c>yearly</c> or <c>weekly</c>.</summary>
    public string? Interval { get; set; }

    /// <summary><c>calendar</c> (default) or <c>anniversary</c> (periods start on the subscription's billing anchor).</summary>
    public string? Alignment { get; set; }

    public List<FixedFeeDefinition>? FixedFees { get; set; }
    public List<ChargeDefinition>? Charges { get; set; }
    public decimal? MinimumCommitment { get; set; }
    public List<EntitlementDefinition>? Entitlements { get; set; }

    /// <summary>Reads and writes the stored form; decimals as strings.</summary>
    public static readonly JsonSerializerOptions StoredJson = new(ApiHttp.Json)
    {
        NumberHandling = JsonNumberHandling.AllowReadingFromString | JsonNumberHandling.WriteAsString,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    public string ToStoredJson() => JsonSerializer.Serialize(this, StoredJson);

    public static PlanDefinition FromStoredJson(string json) => JsonSerializer.Deserialize<PlanDefinition>(json, StoredJson)!;

    /// <summary>
    /// The rating library's plan version, or the problems that stop it from being one (field paths as in the
    /// request). <paramref name="meterAggregation"/> gives the aggregation of a meter of the tenant, null when there is
    /// none; the definition records it in each charge, so that a stored version never depends on a lookup again.
    /// </summary>
    public PlanVersion? ToPlanVersion(string planCode, int version, Func<string, MeterAggregation?> meterAggregation,
        List<(string Field, string Message)> errors)
    {
        int before = errors.Count;
        if (string.IsNullOrEmpty(Currency))
            errors.Add(("currency", "currency is required: an ISO 4217 code such as USD."));
        else if (!Rating.Currency.TryGet(Currency, out _))
            errors.Add(("currency", $"currency '{Currency}' is not an ISO 4217 code (upper case, for example USD, EUR, JPY)."));
        var cadence = Interval switch
        {
            "monthly" => BillingCadence.Monthly,
            "yearly" => BillingCadence.Yearly,
            "weekly" => BillingCadence.Weekly,
            _ => (BillingCadence?)null,
        };
        if (cadence is null)
            errors.Add(("interval", $"interval {(Interval is null ? "is required" : $"'{Interval}' is unknown")}: monthly, yearly or weekly."));
        var alignment = Alignment switch
        {
            null or "calendar" => BillingAlignment.Calendar,
            "anniversary" => BillingAlignment.Anniversary,
            _ => (BillingAlignment?)null,
        };
        if (alignment is null)
            errors.Add(("alignment", $"alignment '{Alignment}' is unknown: calendar or anniversary."));

        var fees = ImmutableArray.CreateBuilder<FixedFee>();
        for (int i = 0; i < (FixedFees?.Count ?? 0); i++)
        {
            var fee = FixedFees![i];
            string path = $"fixedFees[{i}]";
            var timing = fee.Timing switch
            {
                null or "in_advance" => FeeTiming.InAdvance,
                "in_arrears" => FeeTiming.InArrears,
                _ => (FeeTiming?)null,
            };
            if (timing is null)
                errors.Add((path + ".timing", $"timing '{fee.Timing}' is unknown: in_advance or in_arrears."));
            if (fee.Amount is null)
                errors.Add((path + ".amount", "amount is required."));
            CheckCode(fee.Code, path + ".code", errors);
            fees.Add(new FixedFee(fee.Code ?? "", fee.Amount ?? 0m, timing ?? FeeTiming.InAdvance));
        }

        var charges = ImmutableArray.CreateBuilder<Charge>();
        for (int i = 0; i < (Charges?.Count ?? 0); i++)
        {
            var charge = Charges![i];
            string path = $"charges[{i}]";
            CheckCode(charge.Code, path + ".code", errors);
            MeterAggregation aggregation = default;
            if (string.IsNullOrEmpty(charge.Meter))
            {
                errors.Add((path + ".meter", "meter is required: the key of one of the tenant's meters."));
            }
            else if (charge.MeterAggregation is { } stored)
            {
                aggregation = stored;
            }
            else if (meterAggregation(charge.Meter) is { } found)
            {
                aggregation = found;
                charge.MeterAggregation = found;
            }
            else
            {
                errors.Add((path + ".meter", $"there is no meter '{charge.Meter}'; create it first (POST /v1/meters)."));
            }
            var model = charge.Model?.ToModel(path + ".model", errors);
            if (charge.Model is null)
                errors.Add((path + ".model", "model is required."));
            if (model is PercentageModel { FreeEvents: not 0 } or PercentageModel { FixedFeePerEvent: not 0m } && aggregation == MeterAggregation.UniqueCount)
                errors.Add((path + ".model", $"freeEvents and fixedFeePerEvent count events, and meter '{charge.Meter}' (UNIQUE_COUNT) counts distinct values, not events; use a meter that counts the events."));
            charges.Add(new Charge(charge.Code ?? "", new Meter(charge.Meter ?? "", aggregation), model!)
            {
                FreeUnits = charge.FreeUnits ?? 0m,
                MinimumSpend = charge.MinimumSpend ?? 0m,
            });
        }

        var entitlements = ImmutableArray.CreateBuilder<Entitlement>();
        for (int i = 0; i < (Entitlements?.Count ?? 0); i++)
        {
            var entitlement = Entitlements![i];
            string path = $"entitlements[{i}]";
            if (string.IsNullOrEmpty(entitlement.Meter))
                errors.Add((path + ".meter", "meter is required."));
            if (entitlement.Limit is not { } limit || limit < 0)
                errors.Add((path + ".limit", "limit is required and not negative."));
            entitlements.Add(new Entitlement(entitlement.Meter ?? "", entitlement.Limit ?? 0m));
        }
        if (errors.Count > before)
            return null;

        var plan = new PlanVersion(planCode, version, Currency!, new BillingInterval(cadence!.Value, alignment!.Value))
        {
            FixedFees = fees.ToImmutable(),
            Charges = charges.ToImmutable(),
            MinimumCommitment = MinimumCommitment,
            Entitlements = entitlements.ToImmutable(),
        };
        foreach (var problem in PlanValidator.Validate(plan))
            errors.Add((FieldOf(problem.Path), problem.Message + "."));
        return errors.Count > before ? null : plan;
    }

    /// <summary>The rating library names a charge or fee by its code (<c>charges[api_calls].tiers[2]</c>); the API's
    /// field paths use the index in the request, which is what a client can find.</summary>
    private string FieldOf(string path)
    {
        foreach (var (prefix, codes) in new[] { ("charges", Charges?.Select(c => c.Code).ToList()), ("fixedFees", FixedFees?.Select(f => f.Code).ToList()) })
        {
            if (codes is null || !path.StartsWith(prefix + "[", StringComparison.Ordinal))
                continue;
            int close = path.IndexOf(']', prefix.Length);
            if (close < 0)
                continue;
            string code = path[(prefix.Length + 1)..close];
            int index = codes.IndexOf(code);
            if (index >= 0)
                return $"{prefix}[{index}]{path[(close + 1)..]}";
        }
        return path;
    }

    /// <summary>A plan, fee or charge code: 1-64 of a-z, A-Z, 0-9, '-', '_', '.' (the error names the field).</summary>
    internal static void CheckCode(string? code, string field, List<(string, string)> errors)
    {
        if (string.IsNullOrEmpty(code))
            errors.Add((field, $"{field} is required."));
        else if (code.Length > 64 || !code.All(c => c is (>= 'a' and <= 'z') or (>= 'A' and <= 'Z') or (>= '0' and <= '9') or '-' or '_' or '.'))
            errors.Add((field, $"{field} '{Truncate(code)}' must be 1-64 of a-z, A-Z, 0-9, '-', '_', '.'."));
    }

    internal static string Truncate(string text) => text.Length <= 40 ? text : text[..40] + "...";
}

internal sealed class FixedFeeDefinition
{
    public string? Code { get; set; }
    public decimal? Amount { get; set; }

    /// <summary><c>in_advance</c> (default) or <c>in_arrears</c>.</summary>
    public string? Timing { get; set; }
}

internal sealed class ChargeDefinition
{
    public string? Code { get; set; }
    public string? Meter { get; set; }
    public ModelDefinition? Model { get; set; }
    public decimal? FreeUnits { get; set; }
    public decimal? MinimumSpend { get; set; }

    /// <summary>Filled in from the meter when the version is created (a client need not send it).</summary>
    [JsonConverter(typeof(JsonStringEnumConverter<MeterAggregation>))]
    public MeterAggregation? MeterAggregation { get; set; }
}

internal sealed class EntitlementDefinition
{
    public string? Meter { get; set; }
    public decimal? Limit { get; set; }
}

internal sealed class TierDefinition
{
    /// <summary>Inclusive upper bound; absent on the last (unbounded) tier.</summary>
    public decimal? UpTo { get; set; }
    public decimal? UnitPrice { get; set; }
    public decimal? FlatFee { get; set; }
}

/// <summary>One charge model: <c>type</c> says which, and only that model's fields may be given.</summary>
internal sealed class ModelDefinition
{
    public string? Type { get; set; }
    public decimal? UnitPrice { get; set; }
    public List<TierDefinition>? Tiers { get; set; }
    public decimal? PackageSize { get; set; }
    public decimal? PackagePrice { get; set; }
    public decimal? Rate { get; set; }
    public long? FreeEvents { get; set; }
    public decimal? FixedFeePerEvent { get; set; }

    public ChargeModel? ToModel(string path, List<(string, string)> errors)
    {
        var allowed = Type switch
        {
            "standard" => new[] { "unitPrice" },
            "graduated" or "volume" or "graduated_percentage" => ["tiers"],
            "package" => ["packageSize", "packagePrice"],
            "percentage" => ["rate", "freeEvents", "fixedFeePerEvent"],
            _ => null,
        };
        if (allowed is null)
        {
            errors.Add((path + ".type", $"type {(Type is null ? "is required" : $"'{Type}' is unknown")}: standard, graduated, volume, package, percentage or graduated_percentage."));
            return null;
        }
        var given = new (string Name, bool Present)[]
        {
            ("unitPrice", UnitPrice is not null), ("tiers", Tiers is not null), ("packageSize", PackageSize is not null),
            ("packagePrice", PackagePrice is not null), ("rate", Rate is not null), ("freeEvents", FreeEvents is not null),
            ("fixedFeePerEvent", FixedFeePerEvent is not null),
        };
        foreach (var (name, present) in given)
        {
            if (present && !allowed.Contains(name))
                errors.Add(($"{path}.{name}", $"{name} does not belong to a {Type} model (it takes {string.Join(", ", allowed)})."));
        }
        int before = errors.Count;
        ChargeModel? model = Type switch
        {
            "standard" => new StandardModel(Required(UnitPrice, path + ".unitPrice", errors)),
            "graduated" => new GraduatedModel(ToTiers(path, errors)),
            "volume" => new VolumeModel(ToTiers(path, errors)),
            "graduated_percentage" => new GraduatedPercentageModel(ToTiers(path, errors)),
            "package" => new PackageModel(Required(PackageSize, path + ".packageSize", errors), Required(PackagePrice, path + ".packagePrice", errors)),
            _ => new PercentageModel(Required(Rate, path + ".rate", errors), FreeEvents ?? 0, FixedFeePerEvent ?? 0m),
        };
        return errors.Count > before ? null : model;
    }

    private ImmutableArray<Tier> ToTiers(string path, List<(string, string)> errors)
    {
        if (Tiers is null || Tiers.Count == 0)
        {
            errors.Add((path + ".tiers", "tiers is required: at least one tier; the last has no upTo."));
            return [];
        }
        var tiers = ImmutableArray.CreateBuilder<Tier>(Tiers.Count);
        for (int i = 0; i < Tiers.Count; i++)
            tiers.Add(new Tier(Tiers[i].UpTo, Required(Tiers[i].UnitPrice, $"{path}.tiers[{i}].unitPrice", errors), Tiers[i].FlatFee ?? 0m));
        return tiers.MoveToImmutable();
    }

    private static decimal Required(decimal? value, string field, List<(string, string)> errors)
    {
        if (value is null)
            errors.Add((field, $"{field[(field.LastIndexOf('.') + 1)..]} is required."));
        return value ?? 0m;
    }
}
