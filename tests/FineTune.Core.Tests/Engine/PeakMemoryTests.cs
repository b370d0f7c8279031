using FineTune.Core.Engine;
using FineTune.Core.Models;
using FineTune.Core.Training;

namespace FineTune.Core.Tests.Engine;

public sealed class PeakMemoryTests
{
    [Fact]
    public void EveryFamilyHasItsCountedShape()
    {
        foreach (var family in ModelRegistry.Families)
        {
            var (parameters, activations, largest) = PeakMemory.Shape(family);
            Assert.True(parameters > 0 && activations >= largest && largest > 0, family.Name);
        }
    }

    /// <summary>
    /// The largest builders fine-tune their head on a 24 GB machine's default budget (three quarters of it) at the input
    /// of their DEFAULT weights (vit_h_14: 518 px, where one attention is 30 M floats an image): the feature pass holds a
    /// few layers' activations, not a share of all 32 layers'.
    /// </summary>
    [Theory]
    [InlineData("vit_h_14")]
    [InlineData("regnet_y_128gf")]
    [InlineData("vit_l_16")]
    [InlineData("efficientnet_b7")]
    public void TheLargestBuildersTrainTheirHeadWithin24GB(string name)
    {
        var registered = ModelRegistry.Get(name);
        var family = registered.For(registered.PreprocessingFor("DEFAULT"));
        long budget = 24L * 1024 * 1024 * 1024 / 4 * 3;

        var head = PeakMemory.Estimate(family, FreezeMode.Head, 16, OptimizerKind.Sgd, 0.9, featureCache: true);

        Assert.True(head.TotalBytes <= budget, $"{name} at {family.Preprocessing.CropSize} px: {head}");
    }
}
