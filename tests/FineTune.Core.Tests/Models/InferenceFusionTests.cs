using FineTune.Core.Data;
using FineTune.Core.Models;
using TorchSharp;
using TorchSharp.Modules;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace FineTune.Core.Tests.Models;

/// <summary>
/// A fused network (batch norms folded into convolutions, channels-last weights) gives the features of the network it
/// came from, on real photos, for every way of building a family: in float64 to 1e-9, which only an exact rewrite
/// meets (a wrong pair changes features by their own size), and in float32, as it runs, to rounding.
/// </summary>
public sealed class InferenceFusionTests(ITestOutputHelper output)
{
    /// <summary>|fused − original| on a feature in float64, relative to the largest feature when that exceeds 1.</summary>
    private const double ExactTolerance = 1e-9;

    /// <summary>
    /// The same in float32: folding a batch norm's 1/σ into the weights moves where rounding happens, and a deep
    /// network (inception_v3: 96 folded layers) carries that to a few parts in 10⁴.
    /// </summary>
    private const double RoundingTolerance = 1e-3;

    public static TheoryData<string, int> RepresentativeFamilies => new()
    {
        { "resnet18-cntk", 224 }, { "resnet50", 64 }, { "vgg11_bn", 64 }, { "mobilenet_v2", 64 }, { "mobilenet_v3_small", 64 },
        { "googlenet", 64 }, { "inception_v3", 96 }, { "densenet121", 64 },
    };

    public static TheoryData<string, int> OtherFamilies
    {
        get
        {
            var data = new TheoryData<string, int>();
            var representative = RepresentativeFamilies.Select(row => (string)row[0]).ToHashSet();
            foreach (var family in ModelRegistry.Families.Where(f => !representative.Contains(f.Name))) data.Add(family.Name, SmallModels.SmallestInput(family));
            return data;
        }
    }

    [Theory]
    [MemberData(nameof(RepresentativeFamilies))]
    public void AFusedNetworkGivesTheFeaturesOfTheOriginal(string family, int size) => Compare(family, size);

    [AllFamiliesTheory]
    [MemberData(nameof(OtherFamilies))]
    public void AFusedNetworkGivesTheFeaturesOfTheOriginalForEveryOtherFamily(string family, int size) => Compare(family, size);

    private void Compare(string name, int size)
    {
        using var exact = Compare(name, size, ScalarType.Float64, ExactTolerance, reference: null);
        Compare(name, size, ScalarType.Float32, RoundingTolerance, exact).Dispose();
    }

    /// <summary>
    /// The original's features; in float32, the difference allowed grows by four times the original's own distance from
    /// <paramref name="reference"/> (float64): random weights make some deep families (EfficientNet-B5, V2-L) amplify
    /// float32 rounding to whole units, in any implementation, where a fold can only move rounding around.
    /// </summary>
    private Tensor Compare(string name, int size, ScalarType type, double tolerance, Tensor? reference)
    {
        var family = ModelRegistry.Get(name);
        var preprocessing = SmallModels.PreprocessingAt(family, size);
        using var model = FineTuneModel.Create(family.For(preprocessing), numClasses: 3, seed: 5);
        using var scope = NewDisposeScope();
        var photos = stack(TuxPaintStamps.Categories.SelectMany(c => TuxPaintStamps.Images(c, 2))
            .Select(p => ImageLoader.Load(p, preprocessing)).ToList()).to(type);
        model.Module.to(type);
        GiveBatchNormsStatistics(model, photos);
        using var noGrad = no_grad();
        var expected = model.Features(photos);
        int norms = model.Module.modules().OfType<BatchNorm2d>().Count();

        int folded = model.FuseForInference();
        var actual = model.Features(photos);

        double largest = expected.abs().max().to_type(ScalarType.Float64).item<double>(), worst = (actual - expected).abs().max().to_type(ScalarType.Float64).item<double>();
        var expectedFloat64 = expected.to_type(ScalarType.Float64);
        double own = reference is null ? 0 : (expectedFloat64 - reference).abs().max().item<double>();
        output.WriteLine($"{name} in {type}: {folded} of {norms} batch norms folded, max |fused − original| {worst:E2}, largest |feature| {largest:F3}"
            + (reference is null ? "" : $", the original's own |float32 − float64| {own:E2}"));
        Assert.True(worst <= tolerance * Math.Max(1, largest) + 4 * own, $"{name} in {type}: max difference {worst:E2} (largest feature {largest:F3}, own rounding {own:E2})");
        Assert.Equal(norms - folded, model.Module.modules().OfType<BatchNorm2d>().Count());
        if (norms > 0) Assert.True(folded > 0, $"{name}: none of its {norms} batch norms was folded");
        return expectedFloat64.MoveToOuterDisposeScope();
    }

    /// <summary>Scales and running statistics that are not the identity, as pretrained ones are not: from one batch of photos.</summary>
    private static void GiveBatchNormsStatistics(FineTuneModel model, Tensor photos)
    {
        using var noGrad = no_grad();
        SmallModels.RandomiseBatchNorms(model, new Generator(3));
        SmallModels.DampResidualBranches(model);
        model.Module.train();
        using (NewDisposeScope()) model.Forward(photos);
        model.EvalMode();
    }
}
