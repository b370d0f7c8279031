using FineTune.Core.Data;
using FineTune.Core.Weights;
using static TorchSharp.torchvision.models;

namespace FineTune.Core.Models.Families;

/// <summary>torchvision's VGG (<c>models/vgg.py</c>), built by TorchSharp's TorchVision: stages features.N for <c>last:N</c>.</summary>
/// <remarks>Weights tables: <c>tests/FineTune.Core.Tests/Reference/weights_table.py csharp vgg11 vgg11_bn vgg13 vgg13_bn vgg16 vgg16_bn vgg19 vgg19_bn</c>.</remarks>
internal static class VggFamily
{
    public static ModelArchitecture Architecture { get; } = new("VGG",
    [
        new("vgg11", () => vgg11(), "classifier.6", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/vgg11-8a719046.pth", Preprocessing.ImageNet(256, 224), 1000, 132863336),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
        new("vgg11_bn", () => vgg11_bn(), "classifier.6", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/vgg11_bn-6002323d.pth", Preprocessing.ImageNet(256, 224), 1000, 132868840),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
        new("vgg13", () => vgg13(), "classifier.6", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/vgg13-19584684.pth", Preprocessing.ImageNet(256, 224), 1000, 133047848),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
        new("vgg13_bn", () => vgg13_bn(), "classifier.6", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/vgg13_bn-abd245e5.pth", Preprocessing.ImageNet(256, 224), 1000, 133053736),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
        new("vgg16", () => vgg16(), "classifier.6", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/vgg16-397923af.pth", Preprocessing.ImageNet(256, 224), 1000, 138357544),
                new("IMAGENET1K_FEATURES", "https://download.pytorch.org/models/vgg16_features-amdegroot-88682ab5.pth", new Preprocessing(256, 224, ChannelOrder.Rgb, 1f / 255f, [0.48235f, 0.45882f, 0.40784f], [0.00392156862745098f, 0.00392156862745098f, 0.00392156862745098f]) { Interpolation = Interpolation.Bilinear }, 0, 138357544),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
        new("vgg16_bn", () => vgg16_bn(), "classifier.6", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/vgg16_bn-6c64b313.pth", Preprocessing.ImageNet(256, 224), 1000, 138365992),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
        new("vgg19", () => vgg19(), "classifier.6", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth", Preprocessing.ImageNet(256, 224), 1000, 143667240),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
        new("vgg19_bn", () => vgg19_bn(), "classifier.6", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/vgg19_bn-c79401a0.pth", Preprocessing.ImageNet(256, 224), 1000, 143678248),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
    ])
    {
        ForwardSteps = new Dictionary<string, ForwardStep[]>
        {
            ["VGG"] = ["features", "avgpool", ForwardStep.Flatten, "classifier"],
        },
        OnnxForwards = new Dictionary<string, OnnxForward>
        {
            ["VGG"] = (w, m, path, x) => w.Child(m, path, "classifier", w.Flatten(path, w.Children(m, path, x, "features", "avgpool"))),
        },
    };
}
