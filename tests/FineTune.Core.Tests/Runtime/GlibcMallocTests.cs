using FineTune.Core.Runtime;

namespace FineTune.Core.Tests.Runtime;

public sealed class GlibcMallocTests
{
    /// <summary>
    /// Other tests' feature passes open scopes of their own at the same time, so only what holds whatever they do is
    /// checked: inside a scope the threshold is lifted, and a scope ended twice ends once.
    /// </summary>
    [Fact]
    public void AScopeLiftsTheThresholdWhileItIsOpen()
    {
        Assert.True(GlibcMalloc.LimitRetainedMemory());
        var outer = GlibcMalloc.ReuseLargeBlocks();
        using (GlibcMalloc.ReuseLargeBlocks())
            Assert.True(GlibcMalloc.IsReusingLargeBlocks);
        Assert.True(GlibcMalloc.IsReusingLargeBlocks);
        var inner = GlibcMalloc.ReuseLargeBlocks();
        inner.Dispose();
        inner.Dispose();
        Assert.True(GlibcMalloc.IsReusingLargeBlocks);
        outer.Dispose();
    }
}
