namespace AlphaMesh.Rating;

/// <summary>How a line amount is rounded to the currency's minor unit. Set per tenant.</summary>
public enum RoundingMode
{
    /// <summary>To the nearest; a tie goes to the even digit (banker's rounding). The default.</summary>
    HalfEven = 0,

    /// <summary>To the nearest; a tie goes away from zero (1.005 -> 1.01, -1.005 -> -1.01).</summary>
    HalfUp = 1,

    /// <summary>Away from zero whenever anything is left over (1.001 -> 1.01, -1.001 -> -1.01).</summary>
    Up = 2,

    /// <summary>Toward zero: truncation (1.009 -> 1.00, -1.009 -> -1.00).</summary>
    Down = 3,
}
