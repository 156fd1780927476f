using System.Runtime.CompilerServices;
using AlphaMesh.Rating.Internal;

namespace AlphaMesh.Rating;

/// <summary>An ISO 4217 currency and the number of digits after the decimal point of its minor unit.</summary>
/// <param name="Code">The three-letter ISO 4217 code, upper case (for example <c>USD</c>).</param>
/// <param name="MinorUnits">Digits of the minor unit: JPY 0, USD 2, BHD 3, CLF 4.</param>
public readonly record struct Currency(string Code, int MinorUnits)
{
    /// <summary>Finds a currency by its ISO 4217 code (case-sensitive, upper case).</summary>
    public static bool TryGet(string? code, out Currency currency) => CurrencyTable.TryGet(code, out currency);

    /// <summary>Finds a currency by its ISO 4217 code.</summary>
    /// <exception cref="ArgumentException">The code is not an ISO 4217 currency.</exception>
    public static Currency Get(string code) =>
        TryGet(code, out var currency) ? currency : throw new ArgumentException($"'{code}' is not an ISO 4217 currency code.", nameof(code));

    /// <summary>Rounds an exact amount once, to this currency's minor unit.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public decimal Round(decimal amount, RoundingMode mode) => Money.Round(amount, MinorUnits, mode);

    /// <inheritdoc />
    public override string ToString() => Code;
}
