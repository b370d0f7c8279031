using FineTune.Core.Weights;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torchvision.models;

namespace FineTune.Core.Models.Families;

/// <summary>
/// torchvision's MobileNetV2 and MobileNetV3 (<c>models/mobilenetv2.py</c>, <c>mobilenetv3.py</c>; one file here since
/// TorchSharp's two share the InvertedResidual type name), built by TorchSharp's TorchVision: stages features.N for <c>last:N</c>.
/// </summary>
/// <remarks>Weights tables: <c>tests/FineTune.Core.Tests/Reference/weights_table.py csharp mobilenet_v2 mobilenet_v3_small mobilenet_v3_large</c>.</remarks>
internal static class MobileNetFamily
{
    public static ModelArchitecture Architecture { get; } = new("MobileNet",
    [
        new("mobilenet_v2", () => mobilenet_v2(1000), "classifier.1", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth", Preprocessing.ImageNet(256, 224), 1000, 3504872),
                new("IMAGENET1K_V2", "https://download.pytorch.org/models/mobilenet_v2-7ebf99e0.pth", Preprocessing.ImageNet(232, 224), 1000, 3504872),
            ],
            DefaultWeights = "IMAGENET1K_V2",
        },
        new("mobilenet_v3_small", () => WithReLUExcitation(mobilenet_v3_small()), "classifier.3", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/mobilenet_v3_small-047dcff4.pth", Preprocessing.ImageNet(256, 224), 1000, 2542856),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
        new("mobilenet_v3_large", () => WithReLUExcitation(mobilenet_v3_large()), "classifier.3", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/mobilenet_v3_large-8738ca79.pth", Preprocessing.ImageNet(256, 224), 1000, 5483032),
                new("IMAGENET1K_V2", "https://download.pytorch.org/models/mobilenet_v3_large-5c1a4163.pth", Preprocessing.ImageNet(232, 224), 1000, 5483032),
            ],
            DefaultWeights = "IMAGENET1K_V2",
        },
    ])
    {
        ForwardSteps = new Dictionary<string, ForwardStep[]>
        {
            ["MobileNetV2"] = ["features", ForwardStep.Op(x => nn.functional.adaptive_avg_pool2d(x, [1, 1])), ForwardStep.Flatten, "classifier"],
            ["MobileNetV3"] = ["features", "avgpool", ForwardStep.Flatten, "classifier"],
        },
        OnnxForwards = new Dictionary<string, OnnxForward>
        {
            ["MobileNetV2"] = (w, m, path, x) => w.Child(m, path, "classifier", w.Flatten(path, w.AdaptiveAvgPool(path, w.Child(m, path, "features", x), [1, 1]))),
            ["MobileNetV3"] = (w, m, path, x) => w.Child(m, path, "classifier", w.Flatten(path, w.Children(m, path, x, "features", "avgpool"))),
            // The blocks add their input when stride is 1 and channels stay: exactly when the shape stays.
            ["InvertedResidual"] = (w, m, path, x) =>
            {
                var (name, _) = m.named_children().Single();
                var output = w.Child(m, path, name, x);
                return output.Trace.shape.SequenceEqual(x.Trace.shape) ? w.Add(path, output, x) : output;
            },
        },
    };

    /// <summary>
    /// TorchSharp 0.107's MobileNetV3 squeeze-excitation blocks apply ReLU6 where torchvision's apply ReLU: the
    /// same weights then give other outputs wherever an excitation exceeds 6, so each gets torchvision's ReLU.
    /// </summary>
    private static nn.Module<Tensor, Tensor> WithReLUExcitation(nn.Module<Tensor, Tensor> model)
    {
        var blocks = model.named_modules().Where(m => m.module is torchvision.SqueezeExcitation).Select(m => m.name).ToList();
        foreach (var block in blocks)
            ModuleSurgery.Replace(model, block + ".activation", nn.ReLU());
        return model;
    }
}
