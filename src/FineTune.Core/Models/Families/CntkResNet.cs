using FineTune.Core.Weights;
using static TorchSharp.torch;

namespace FineTune.Core.Models.Families;

/// <summary>
/// ML.NET's CNTK ResNet18, whose weights ship with the app (<see cref="CntkResNet18"/>): torchvision's BasicBlock
/// ResNet with a 3-block layer4, so <see cref="ResNetFamily"/>'s module types, ONNX forwards and fusion pairs serve
/// it. <c>resnet18-cntk</c> takes the native BGR 0–255 input minus a mean image; <c>resnet18-cntk-rgb</c> the same
/// weights with the mean image folded in, taking torchvision's RGB ImageNet input.
/// </summary>
internal static class CntkResNetFamily
{
    private static readonly Lazy<float[]> MeanImage = new(() => CntkResNet18.ReadMeanImage(CntkResNet18.PreprocessPath));

    private static readonly Preprocessing Native =
        new(256, CntkResNet18.InputSize, ChannelOrder.Bgr, 1f, [0f, 0f, 0f], [1f, 1f, 1f]) { MeanImage = MeanImage };

    public static ModelArchitecture Architecture { get; } = new("CNTK ResNet",
    [
        new(CntkResNet18.FamilyName, CntkResNet18.CreateLayout, "fc", Native)
        {
            BundledWeights = () => CntkResNet18.ReadStateDict(CntkResNet18.ModelPath),
            Constructor = Constructor,
        },
        new(CntkResNet18.RgbFamilyName, CntkResNet18.CreateLayout, "fc", Preprocessing.ImageNet())
        {
            BundledWeights = FoldedWeights,
            Constructor = Constructor,
        },
    ])
    {
        // ResNet's module types: forwards and fusion pairs are looked up in the model's own architecture.
        OnnxForwards = ResNetFamily.Architecture.OnnxForwards,
        FusionPairs = ResNetFamily.Architecture.FusionPairs,
        ForwardSteps = ResNetFamily.Architecture.ForwardSteps,
    };

    private static string Constructor(int classes) =>
        $"torchvision.models.resnet.ResNet(torchvision.models.resnet.BasicBlock, [{string.Join(", ", CntkResNet18.Layers)}], num_classes={classes})";

    private static Dictionary<string, Tensor> FoldedWeights()
    {
        var native = CntkResNet18.ReadStateDict(CntkResNet18.ModelPath);
        try
        {
            return CntkResNet18.FoldIntoRgbInput(native, MeanImage.Value, Preprocessing.ImageNet());
        }
        finally
        {
            foreach (var tensor in native.Values) tensor.Dispose();
        }
    }
}
