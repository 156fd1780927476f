using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace AlphaMesh.BillingApi.Internal;

/// <summary>
/// The <c>AlphaMesh-Signature</c> header: <c>t=&lt;unix seconds&gt;,v1=&lt;hex HMAC-SHA256&gt;</c>, the HMAC keyed with the
/// UTF-8 bytes of the endpoint's secret over <c>"&lt;t&gt;." + body</c>. Signing the time lets a receiver refuse a
/// replayed old request; each attempt is signed anew with its own time.
/// </summary>
internal static class WebhookSignature
{
    public const string Header = "AlphaMesh-Signature";

    public static string Sign(string secret, long unixSeconds, ReadOnlySpan<byte> body)
    {
        var prefix = Encoding.UTF8.GetBytes(unixSeconds.ToString(CultureInfo.InvariantCulture) + ".");
        var message = new byte[prefix.Length + body.Length];
        prefix.CopyTo(message, 0);
        body.CopyTo(message.AsSpan(prefix.Length));
        var mac = HMACSHA256.HashData(Encoding.UTF8.GetBytes(secret), message);
        return $"t={unixSeconds.ToString(CultureInfo.InvariantCulture)},v1={Convert.ToHexStringLower(mac)}";
    }

    /// <summary>A new endpoint secret: <c>whsec_</c> and 32 random bytes in hex.</summary>
    public static string NewSecret() => "whsec_" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));
}
