using FineTune.Core.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTune.Core.Tests.Models;

public class ModelZooTests
{
    [Fact]
    public void Resnet18ForwardGivesOneLogitPerClass()
    {
        using var scope = NewDisposeScope();
        using var model = ModelZoo.Create("resnet18", numClasses: 5, seed: 1);
        model.eval();
        using var _ = no_grad();

        var logits = model.call(RandomBatch(seed: 2));

        Assert.Equal(new long[] { 2, 5 }, logits.shape);
        Assert.True(logits.isfinite().all().item<bool>());
    }

    [Fact]
    public void SameSeedGivesSameModelAndOutput()
    {
        using var scope = NewDisposeScope();
        using var first = ModelZoo.Create("resnet18", numClasses: 3, seed: 42);
        using var second = ModelZoo.Create("resnet18", numClasses: 3, seed: 42);
        using var other = ModelZoo.Create("resnet18", numClasses: 3, seed: 43);
        first.eval(); second.eval(); other.eval();
        using var _ = no_grad();
        var batch = RandomBatch(seed: 7);

        var a = first.call(batch);
        var b = second.call(batch);
        var c = other.call(batch);

        Assert.True(a.eq(b).all().item<bool>(), "same seed must give bitwise-identical logits");
        Assert.False(a.eq(c).all().item<bool>(), "a different seed must give a different model");
    }

    [Fact]
    public void UnknownFamilyNamesTheKnownOnes()
    {
        var error = Assert.Throws<ArgumentException>(() => ModelZoo.Create("resnet19", 2, 0));
        Assert.Contains("resnet18", error.Message);
    }

    private static Tensor RandomBatch(long seed)
    {
        var generator = new Generator((ulong)seed);
        return randn(new long[] { 2, 3, 64, 64 }, generator: generator);
    }
}
