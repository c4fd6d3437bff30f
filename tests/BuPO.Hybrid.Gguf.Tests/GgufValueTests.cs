using BuPO.Hybrid.Gguf;

namespace BuPO.Hybrid.Gguf.Tests;

public class GgufValueTests
{
    [Fact]
    public void AsInt64OrNull_ReadsEveryIntegerType_AndNothingElse()
    {
        GgufValue[] integers = [GgufValue.Of((byte)7), GgufValue.Of((sbyte)7), GgufValue.Of((ushort)7), GgufValue.Of((short)7),
            GgufValue.Of(7u), GgufValue.Of(7), GgufValue.Of(7L), GgufValue.Of(7UL)];
        Assert.All(integers, v => Assert.Equal(7L, v.AsInt64OrNull()));
        Assert.Null(GgufValue.Of(ulong.MaxValue).AsInt64OrNull());
        Assert.Null(GgufValue.Of(true).AsInt64OrNull());
        Assert.Null(GgufValue.Of(7f).AsInt64OrNull());
        Assert.Null(GgufValue.Of("7").AsInt64OrNull());
    }

    [Fact]
    public void AsInt64_ReadsBoolsAsZeroOrOne_AndRefusesWhatIsNoInteger()
    {
        Assert.Equal(1L, GgufValue.Of(true).AsInt64());
        Assert.Equal(-3L, GgufValue.Of((sbyte)-3).AsInt64());
        Assert.Throws<OverflowException>(() => GgufValue.Of(ulong.MaxValue).AsInt64());
        Assert.Throws<InvalidCastException>(() => GgufValue.Of("7").AsInt64());
    }
}
