using FineTune.Core.Models;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace FineTune.Core.Tests.Models;

/// <summary>
/// A network split at any stage (what the boundary cache trains from) gives the output of its own forward pass: what
/// the boundary receives, run on from there, is the logits, in float64 to 1e-9 (a missed or repeated step changes them
/// by their own size), for one builder of every family that declares its forward's steps, split where users split it
/// (<c>last:1</c> to <c>last:3</c>) and at its second stage (the longest frozen part's other end).
/// </summary>
public sealed class StageForwardTests(ITestOutputHelper output)
{
    /// <summary>The families whose forward can start at a stage; the others (attention models, GoogLeNet's and Inception's aux heads) train stages on images.</summary>
    private static readonly string[] Splittable =
        ["CNTK ResNet", "ResNet", "VGG", "MobileNet", "AlexNet", "DenseNet", "RegNet", "EfficientNet", "ConvNeXt", "ShuffleNetV2", "MNASNet", "SqueezeNet"];

    public static TheoryData<string> OneBuilderPerFamily
    {
        get
        {
            var data = new TheoryData<string>();
            foreach (var family in ModelRegistry.Families.GroupBy(f => f.Architecture).Select(g => g.First())) data.Add(family.Name);
            return data;
        }
    }

    [Theory]
    [MemberData(nameof(OneBuilderPerFamily))]
    public void EveryStageSplitsTheForwardWhereTheFamilyDeclaresItsSteps(string name)
    {
        var family = ModelRegistry.Get(name);
        int size = SmallModels.SmallestInput(family);
        var preprocessing = SmallModels.PreprocessingAt(family, size);
        using var model = FineTuneModel.Create(family.For(preprocessing), numClasses: 3, seed: 7);
        model.Freeze(FreezeMode.Last(1));
        Assert.Equal(Splittable.Contains(family.Architecture), model.CanStartAtBoundary);
        if (!model.CanStartAtBoundary) return;

        using var scope = NewDisposeScope();
        model.Module.to(ScalarType.Float64);
        model.EvalMode();
        using var noGrad = no_grad();
        var input = randn([1, 3, preprocessing.CropSize, preprocessing.CropSize], ScalarType.Float64, generator: new Generator(3));
        var expected = model.Forward(input);
        int[] splits = [.. new[] { 1, 2, 3, model.Stages.Count - 1 }.Where(n => n < model.Stages.Count).Distinct()];
        foreach (int trainable in splits)
        {
            model.Freeze(FreezeMode.Last(trainable));
            Assert.Equal(model.Stages[^trainable], model.Boundary);
            var actual = model.FromBoundary(model.Features(input));
            double worst = (actual - expected).abs().max().item<double>();
            Assert.True(worst <= 1e-9 * Math.Max(1, expected.abs().max().item<double>()), $"{name} split at {model.Boundary}: max difference {worst:E2}");
        }
        output.WriteLine($"{name}: split at {string.Join(", ", splits.Select(n => model.Stages[^n]))}");
    }
}
