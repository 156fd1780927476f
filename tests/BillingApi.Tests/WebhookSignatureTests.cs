using System.Security.Cryptography;
using System.Text;
using AlphaMesh.BillingApi.Internal;

namespace AlphaMesh.BillingApi.Tests;

public sealed class WebhookSignatureTests
{
    /// <summary>Expected values computed outside .NET, with Python's hmac module:
    /// <c>hmac.new(secret.encode(), b"&lt;t&gt;." + body.encode(), hashlib.sha256).hexdigest()</c>.</summary>
    [Theory]
    [InlineData("whsec_test_secret", 1700000000L, """{"id":"e1","data":{"amount":"12.50"}}""", "eada70a78fc25c7e8edb9c028f82f79a5fcc4a1715fbbdb37e3b728481c767ff")]
    [InlineData("whsec_ünïcode", 42L, """{"name":"Grüße"}""", "e0914963d823d7a3ab10bd4c48add07fce3eaaf2980ac6bea04fd7afa8d0681f")]
    public void Sign_KnownVector_MatchesPythonHmac(string secret, long t, string body, string expectedHex)
    {
        Assert.Equal($"t={t},v1={expectedHex}", WebhookSignature.Sign(secret, t, Encoding.UTF8.GetBytes(body)));
    }

    [Fact]
    public void Sign_RandomSecretsTimesAndBodies_MatchesAnIncrementalHmacOverTimeDotBody()
    {
        var random = new Random(20261125);
        for (int i = 0; i < 500; i++)
        {
            var secret = WebhookSignature.NewSecret();
            long t = random.NextInt64(0, 4_000_000_000);
            var body = new byte[random.Next(0, 3000)];
            random.NextBytes(body);

            // Independent of Sign's one-shot buffer: the MAC fed piece by piece.
            using var mac = IncrementalHash.CreateHMAC(HashAlgorithmName.SHA256, Encoding.UTF8.GetBytes(secret));
            mac.AppendData(Encoding.ASCII.GetBytes(t.ToString(System.Globalization.CultureInfo.InvariantCulture)));
            mac.AppendData("."u8);
            mac.AppendData(body);

            Assert.Equal($"t={t},v1={Convert.ToHexStringLower(mac.GetHashAndReset())}", WebhookSignature.Sign(secret, t, body));
        }
    }

    [Fact]
    public void NewSecret_TwoCalls_AreDifferentAndCarryThePrefixAnd32Bytes()
    {
        var a = WebhookSignature.NewSecret();
        var b = WebhookSignature.NewSecret();

        Assert.NotEqual(a, b);
        Assert.Matches("^whsec_[0-9a-f]{64}$", a);
    }
}
