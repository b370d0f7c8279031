using System.Globalization;
using FineTune.Core.Models;
using FineTune.Core.Tests.Reference;
using FineTune.Core.Weights;
using FineTune.Testing;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTune.Core.Tests.Models;

/// <summary>
/// ConvNeXt, EfficientNet (v1, v2), RegNet (X, Y) and the ResNet-101 variants against torchvision 0.14 itself:
/// PyTorch builds each builder with random weights and randomised BatchNorm/LayerNorm state; its state dict must load
/// here with exactly torchvision's keys and shapes and give PyTorch's logits, and the state dict we write must load in
/// PyTorch (strict) and give them there. CI checks the smallest builder of each family, FINETUNE_ALL_FAMILIES=1 all.
/// </summary>
public sealed class ModernFamiliesParityTests : IDisposable
{
    private const double Tolerance = 1e-4;
    private const int InputSize = 64;
    private readonly string _dir = Directory.CreateTempSubdirectory("modern-parity-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>Every builder of the new families with its head path, by torchvision name.</summary>
    private static readonly Dictionary<string, (Func<nn.Module<Tensor, Tensor>> Create, string Head)> Builders =
        ConvNeXt.Builders.Select(b => (b.Name, (b.Create, "classifier.2")))
            .Concat(EfficientNet.Builders.Select(b => (b.Name, (b.Create, "classifier.1"))))
            .Concat(RegNet.Builders.Select(b => (b.Name, (b.Create, "fc"))))
            .Concat(new (string, (Func<nn.Module<Tensor, Tensor>>, string))[]
            {
                // TorchVision .NET 0.107's resnext101_64x4d lacks most of layer3 (its builder is not torchvision's), so all
                // three are its resnet101 with torchvision's groups and width per group.
                ("resnext101_32x8d", (() => TorchSharp.torchvision.models.resnet101(groups: 32, width_per_group: 8), "fc")),
                ("resnext101_64x4d", (() => TorchSharp.torchvision.models.resnet101(groups: 64, width_per_group: 4), "fc")),
                ("wide_resnet101_2", (() => TorchSharp.torchvision.models.resnet101(width_per_group: 128), "fc")),
            })
            .ToDictionary(b => b.Item1, b => b.Item2);

    /// <summary>The smallest builder of each family: what CI runs.</summary>
    public static TheoryData<string> Smallest => new("convnext_tiny", "efficientnet_b0", "efficientnet_v2_s", "regnet_x_400mf", "regnet_y_400mf");

    public static TheoryData<string> All => new(Builders.Keys);

    [Fact]
    public void EveryTorchvisionBuilderOfTheseFamiliesIsHere()
    {
        var torchvision = PythonReference.RunScript("-c", "import torchvision; print(' '.join(torchvision.models.list_models()))")
            .Split(' ').Where(n => n.StartsWith("convnext_", StringComparison.Ordinal) || n.StartsWith("efficientnet_", StringComparison.Ordinal)
                || n.StartsWith("regnet_", StringComparison.Ordinal) || n is "resnext101_32x8d" or "resnext101_64x4d" or "wide_resnet101_2");
        Assert.Equal(torchvision.Order(), Builders.Keys.Order());
    }

    /// <summary>
    /// torchvision's initialisation of a fresh ConvNeXt (truncated normal, std 0.02) gives finite logits: TorchSharp 0.107's
    /// native trunc_normal_ gave every weight 0.02 and NaN at the draw's bounds.
    /// </summary>
    [Fact]
    public void FreshConvNeXtGivesFiniteLogits()
    {
        using var model = FineTuneModel.Create(ModelRegistry.Get("convnext_tiny"), numClasses: 3, seed: 5);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        Assert.All(model.Module.parameters(), p => Assert.True(p.isfinite().all().item<bool>()));
        var linear = model.Module.named_parameters().Single(p => p.name == "features.1.0.block.3.weight").parameter;
        Assert.InRange(linear.std().item<float>(), 0.015, 0.025);
        model.EvalMode();
        Assert.True(model.Forward(randn(2, 3, InputSize, InputSize)).isfinite().all().item<bool>());
    }

    // Registered now: TorchvisionParityTests checks the smallest of each family in CI, through FineTuneModel.
    [AllFamiliesTheory]
    [MemberData(nameof(Smallest))]
    public void SmallestBuilderOfEachFamilyMatchesTorchvision(string name) => CheckAgainstTorchvision(name);

    [AllFamiliesTheory]
    [MemberData(nameof(All))]
    public void EveryBuilderMatchesTorchvision(string name) => CheckAgainstTorchvision(name);

    /// <summary>
    /// Every BatchNorm of these families directly follows a convolution inside a Sequential (torchvision's
    /// Conv2dNormActivation, RegNet's projection), so inference fusion folds all of them; in float64 the fused network
    /// gives the original's logits to 1e-9 (relative to the largest), which only an exact rewrite meets.
    /// </summary>
    [Theory]
    [InlineData("efficientnet_b0")]
    [InlineData("regnet_y_400mf")]
    public void FusionFoldsEveryBatchNormAndKeepsTheLogits(string name)
    {
        var (create, head) = Builders[name];
        using var model = FineTuneModel.Create(new ModelFamily(name, create, head, Preprocessing.ImageNet()), numClasses: 3, seed: 5);
        using var scope = NewDisposeScope();
        var input = randn([4, 3, InputSize, InputSize], generator: new Generator(1)).to(ScalarType.Float64);
        model.Module.to(ScalarType.Float64);
        using (no_grad())
        {
            SmallModels.RandomiseBatchNorms(model, new Generator(3));
            model.Module.train();
            model.Forward(input);
        }
        model.EvalMode();
        using var noGrad = no_grad();
        var expected = model.Forward(input);
        int norms = model.Module.modules().OfType<TorchSharp.Modules.BatchNorm2d>().Count();

        Assert.Equal(norms, model.FuseForInference());
        double largest = expected.abs().max().item<double>(), worst = (model.Forward(input) - expected).abs().max().item<double>();
        Assert.True(worst <= 1e-9 * Math.Max(1, largest), $"{name}: max |fused − original| {worst:E2} (largest logit {largest:F3})");
    }

    private void CheckAgainstTorchvision(string name)
    {
        PythonReference.Run("export", name, _dir, InputSize.ToString(CultureInfo.InvariantCulture));
        var (create, head) = Builders[name];
        var family = new ModelFamily(name, create, head, Preprocessing.ImageNet());

        using var scope = NewDisposeScope();
        using var model = FineTuneModel.Create(family, numClasses: 1000, seed: 5);
        var checkpoint = StateDictFile.Read(Path.Combine(_dir, "model.pth"));
        Assert.Equal(checkpoint.Keys.Order(), model.Module.state_dict().Keys.Order());
        PretrainedWeights.LoadAll(model, checkpoint);
        model.EvalMode();

        var io = StateDictFile.Read(Path.Combine(_dir, "io.pth"));
        using (no_grad())
        {
            var logits = model.Forward(io["input"]);
            Assert.Equal(io["logits"].shape, logits.shape);
            double difference = (logits - io["logits"]).abs().max().item<float>();
            Assert.True(difference <= Tolerance, $"{name}: max |Δlogit| = {difference}");
        }

        var written = Path.Combine(_dir, "ours.pth");
        StateDictFile.Write(model.Module.state_dict(), written, StateDictFormat.PyTorch);
        double inPyTorch = double.Parse(PythonReference.Run("check", name, "1000", written, Path.Combine(_dir, "io.pth")), CultureInfo.InvariantCulture);
        Assert.True(inPyTorch <= Tolerance, $"{name}: PyTorch on our state dict, max |Δlogit| = {inPyTorch}");
    }
}
