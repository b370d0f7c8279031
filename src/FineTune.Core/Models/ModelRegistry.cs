using FineTune.Core.Weights;
using TorchSharp;
using static TorchSharp.torchvision.models;

namespace FineTune.Core.Models;

/// <summary>Every model family the service knows, by name.</summary>
public static class ModelRegistry
{
    private static readonly Preprocessing Standard = Preprocessing.ImageNet();

    private static readonly Lazy<float[]> CntkMeanImage = new(() => CntkResNet18.ReadMeanImage(CntkResNet18.PreprocessPath));

    private static readonly ModelFamily[] All =
    [
        new(CntkResNet18.FamilyName, CntkResNet18.CreateLayout, "fc",
            new Preprocessing(256, CntkResNet18.InputSize, ChannelOrder.Bgr, 1f, [0f, 0f, 0f], [1f, 1f, 1f]) { MeanImage = CntkMeanImage },
            BundledWeights: () => CntkResNet18.ReadStateDict(CntkResNet18.ModelPath)),
        new(CntkResNet18.RgbFamilyName, CntkResNet18.CreateLayout, "fc", Standard,
            BundledWeights: () => FoldedCntkWeights()),
        new("resnet18", () => resnet18(), "fc", Standard),
        new("resnet34", () => resnet34(), "fc", Standard),
        new("resnet50", () => resnet50(), "fc", Standard),
        new("resnet101", () => resnet101(), "fc", Standard),
        new("resnet152", () => resnet152(), "fc", Standard),
        new("resnext50_32x4d", () => resnext50_32x4d(), "fc", Standard),
        new("wide_resnet50_2", () => wide_resnet50_2(), "fc", Standard),
        new("vgg11", () => vgg11(), "classifier.6", Standard),
        new("vgg11_bn", () => vgg11_bn(), "classifier.6", Standard),
        new("vgg13", () => vgg13(), "classifier.6", Standard),
        new("vgg13_bn", () => vgg13_bn(), "classifier.6", Standard),
        new("vgg16", () => vgg16(), "classifier.6", Standard),
        new("vgg16_bn", () => vgg16_bn(), "classifier.6", Standard),
        new("vgg19", () => vgg19(), "classifier.6", Standard),
        new("vgg19_bn", () => vgg19_bn(), "classifier.6", Standard),
        new("mobilenet_v2", () => mobilenet_v2(1000), "classifier.1", Standard),
        new("mobilenet_v3_small", () => WithReLUExcitation(mobilenet_v3_small()), "classifier.3", Standard),
        new("mobilenet_v3_large", () => WithReLUExcitation(mobilenet_v3_large()), "classifier.3", Standard),
        new("alexnet", () => alexnet(), "classifier.6", Standard),
        new("googlenet", () => googlenet(), "fc", Standard, IgnoredCheckpointPrefixes: ["aux1.", "aux2."]),
        new("inception_v3", () => inception_v3(), "fc", Preprocessing.ImageNet(resizeSize: 342, cropSize: 299), AuxiliaryHeads: ["AuxLogits.fc"]),
        new("densenet121", () => DenseNet.Create(32, [6, 12, 24, 16], 64), "classifier", Standard),
        new("densenet161", () => DenseNet.Create(48, [6, 12, 36, 24], 96), "classifier", Standard),
        new("densenet169", () => DenseNet.Create(32, [6, 12, 32, 32], 64), "classifier", Standard),
        new("densenet201", () => DenseNet.Create(32, [6, 12, 48, 32], 64), "classifier", Standard),
    ];

    public static IReadOnlyList<ModelFamily> Families => All;

    /// <summary>
    /// TorchSharp 0.107's MobileNetV3 squeeze-excitation blocks apply ReLU6 where torchvision's apply ReLU: the
    /// same weights then give other outputs wherever an excitation exceeds 6, so each gets torchvision's ReLU.
    /// </summary>
    private static torch.nn.Module<torch.Tensor, torch.Tensor> WithReLUExcitation(torch.nn.Module<torch.Tensor, torch.Tensor> model)
    {
        var blocks = model.named_modules().Where(m => m.module is torchvision.SqueezeExcitation).Select(m => m.name).ToList();
        foreach (var block in blocks)
            ModuleSurgery.Replace(model, block + ".activation", torch.nn.ReLU());
        return model;
    }

    private static Dictionary<string, TorchSharp.torch.Tensor> FoldedCntkWeights()
    {
        var native = CntkResNet18.ReadStateDict(CntkResNet18.ModelPath);
        try
        {
            return CntkResNet18.FoldIntoRgbInput(native, CntkMeanImage.Value, Standard);
        }
        finally
        {
            foreach (var tensor in native.Values) tensor.Dispose();
        }
    }

    /// <summary>
    /// The Python line that builds the family in torchvision, ready for a published state dict (strict): CNTK's
    /// ResNet18 has a 3-block layer4, and published googlenets have no auxiliary heads while inception_v3s keep theirs.
    /// </summary>
    public static string PyTorchConstructor(ModelFamily family, int classes) => family.Name switch
    {
        CntkResNet18.FamilyName or CntkResNet18.RgbFamilyName =>
            $"torchvision.models.resnet.ResNet(torchvision.models.resnet.BasicBlock, [{string.Join(", ", CntkResNet18.Layers)}], num_classes={classes})",
        "googlenet" => $"torchvision.models.googlenet(num_classes={classes}, aux_logits=False, transform_input=False, init_weights=False)",
        "inception_v3" => $"torchvision.models.inception_v3(num_classes={classes}, aux_logits=True, transform_input=False, init_weights=False)",
        var name => $"torchvision.models.{name}(num_classes={classes})",
    };

    public static ModelFamily Get(string name) =>
        All.FirstOrDefault(f => f.Name == name)
        ?? throw new UnknownModelFamilyException(name, All.Select(f => f.Name));
}

public sealed class UnknownModelFamilyException(string name, IEnumerable<string> known)
    : BadInputException($"unknown model family '{name}'; known: {string.Join(", ", known)}")
{
    public string Family { get; } = name;
}
