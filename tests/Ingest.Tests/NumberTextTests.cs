using System.Text;
using AlphaMesh.Ingest.Internal;

namespace AlphaMesh.Ingest.Tests;

public sealed class NumberTextTests
{
    [Theory]
    [InlineData("0", true)]
    [InlineData("-0", true)]
    [InlineData("12.5", true)]
    [InlineData("1e400", true)]
    [InlineData("-1.5E-3", true)]
    [InlineData("NaN", true)]
    [InlineData("-inf", true)]
    [InlineData("+Infinity", true)]
    [InlineData("iNfInItY", true)]
    [InlineData("", false)]
    [InlineData("-", false)]
    [InlineData("01", false)]
    [InlineData("1.", false)]
    [InlineData(".5", false)]
    [InlineData("1e", false)]
    [InlineData("+5", false)]
    [InlineData("12 apples", false)]
    [InlineData("0x1F", false)]
    [InlineData("information", false)]
    [InlineData("nano", false)]
    public void ClaimsToBeNumber_Text_FollowsDefinition(string text, bool claims)
        => Assert.Equal(claims, NumberText.ClaimsToBeNumber(Encoding.UTF8.GetBytes(text)));

    [Theory]
    [InlineData("12.5", false)]
    [InlineData("1e-400", false)]
    [InlineData("79228162514264337593543950335", false)]
    [InlineData("79228162514264337593543950336", true)]
    [InlineData("1e400", true)]
    [InlineData("NaN", true)]
    [InlineData("+5", false)]
    [InlineData("hello", false)]
    public void IsInvalidNumber_Text_OnlyClaimingNonDecimals(string text, bool invalid)
        => Assert.Equal(invalid, NumberText.IsInvalidNumber(Encoding.UTF8.GetBytes(text), DataValueKind.Text));
}
