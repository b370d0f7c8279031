using FineTune.Core.Export;
using FineTune.Core.Weights;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torchvision.models;

namespace FineTune.Core.Models.Families;

/// <summary>
/// torchvision's ResNet, ResNeXt and Wide ResNet (<c>models/resnet.py</c>), built by TorchSharp's TorchVision: stages
/// conv1, bn1, layer1..layer4 for <c>last:N</c>. Its module types (ResNet, BasicBlock, Bottleneck) serve
/// <see cref="CntkResNetFamily"/> too.
/// </summary>
/// <remarks>Weights tables: <c>tests/FineTune.Core.Tests/Reference/weights_table.py csharp resnet18 resnet34 resnet50 resnet101 resnet152 resnext50_32x4d resnext101_32x8d resnext101_64x4d wide_resnet50_2 wide_resnet101_2</c>.</remarks>
internal static class ResNetFamily
{
    public static ModelArchitecture Architecture { get; } = new("ResNet",
    [
        new("resnet18", () => resnet18(), "fc", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/resnet18-f37072fd.pth", Preprocessing.ImageNet(256, 224), 1000, 11689512),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
        new("resnet34", () => resnet34(), "fc", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/resnet34-b627a593.pth", Preprocessing.ImageNet(256, 224), 1000, 21797672),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
        new("resnet50", () => resnet50(), "fc", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/resnet50-0676ba61.pth", Preprocessing.ImageNet(256, 224), 1000, 25557032),
                new("IMAGENET1K_V2", "https://download.pytorch.org/models/resnet50-11ad3fa6.pth", Preprocessing.ImageNet(232, 224), 1000, 25557032),
            ],
            DefaultWeights = "IMAGENET1K_V2",
        },
        new("resnet101", () => resnet101(), "fc", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/resnet101-63fe2227.pth", Preprocessing.ImageNet(256, 224), 1000, 44549160),
                new("IMAGENET1K_V2", "https://download.pytorch.org/models/resnet101-cd907fc2.pth", Preprocessing.ImageNet(232, 224), 1000, 44549160),
            ],
            DefaultWeights = "IMAGENET1K_V2",
        },
        new("resnet152", () => resnet152(), "fc", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/resnet152-394f9c45.pth", Preprocessing.ImageNet(256, 224), 1000, 60192808),
                new("IMAGENET1K_V2", "https://download.pytorch.org/models/resnet152-f82ba261.pth", Preprocessing.ImageNet(232, 224), 1000, 60192808),
            ],
            DefaultWeights = "IMAGENET1K_V2",
        },
        new("resnext50_32x4d", () => resnext50_32x4d(), "fc", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/resnext50_32x4d-7cdf4587.pth", Preprocessing.ImageNet(256, 224), 1000, 25028904),
                new("IMAGENET1K_V2", "https://download.pytorch.org/models/resnext50_32x4d-1a0047aa.pth", Preprocessing.ImageNet(232, 224), 1000, 25028904),
            ],
            DefaultWeights = "IMAGENET1K_V2",
        },
        // TorchSharp 0.107's resnext101_32x8d and resnext101_64x4d build ResNet-50's 6 blocks in layer3, not 23: ResNet-101 with their groups and widths instead.
        new("resnext101_32x8d", () => resnet101(groups: 32, width_per_group: 8), "fc", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/resnext101_32x8d-8ba56ff5.pth", Preprocessing.ImageNet(256, 224), 1000, 88791336),
                new("IMAGENET1K_V2", "https://download.pytorch.org/models/resnext101_32x8d-110c445d.pth", Preprocessing.ImageNet(232, 224), 1000, 88791336),
            ],
            DefaultWeights = "IMAGENET1K_V2",
        },
        new("resnext101_64x4d", () => resnet101(groups: 64, width_per_group: 4), "fc", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/resnext101_64x4d-173b62eb.pth", Preprocessing.ImageNet(232, 224), 1000, 83455272),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
        new("wide_resnet50_2", () => wide_resnet50_2(), "fc", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/wide_resnet50_2-95faca4d.pth", Preprocessing.ImageNet(256, 224), 1000, 68883240),
                new("IMAGENET1K_V2", "https://download.pytorch.org/models/wide_resnet50_2-9ba9bcbe.pth", Preprocessing.ImageNet(232, 224), 1000, 68883240),
            ],
            DefaultWeights = "IMAGENET1K_V2",
        },
        new("wide_resnet101_2", () => wide_resnet101_2(), "fc", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/wide_resnet101_2-32ee1156.pth", Preprocessing.ImageNet(256, 224), 1000, 126886696),
                new("IMAGENET1K_V2", "https://download.pytorch.org/models/wide_resnet101_2-d733dc28.pth", Preprocessing.ImageNet(232, 224), 1000, 126886696),
            ],
            DefaultWeights = "IMAGENET1K_V2",
        },
    ])
    {
        ForwardSteps = new Dictionary<string, ForwardStep[]>
        {
            [nameof(ResNet)] = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "flatten", "fc"],
        },
        OnnxForwards = new Dictionary<string, OnnxForward>
        {
            [nameof(ResNet)] = (w, m, path, x) => w.Children(m, path, x, "conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "flatten", "fc"),
            ["BasicBlock"] = (w, m, path, x) => Residual(w, m, path, x, x =>
                w.Child(m, path, "bn2", w.Child(m, path, "conv2", w.Relu(path, w.Children(m, path, x, "conv1", "bn1"))))),
            ["Bottleneck"] = (w, m, path, x) => Residual(w, m, path, x, x =>
                w.Children(m, path, w.Relu(path, w.Children(m, path, w.Relu(path, w.Children(m, path, x, "conv1", "bn1")), "conv2", "bn2")), "conv3", "bn3")),
        },
        FusionPairs = new Dictionary<string, (string Conv, string Norm)[]>
        {
            [nameof(ResNet)] = [("conv1", "bn1")],
            ["BasicBlock"] = [("conv1", "bn1"), ("conv2", "bn2")],
            ["Bottleneck"] = [("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")],
        },
    };

    /// <summary>relu(main(x) + x), x through the block's downsample where it has one.</summary>
    private static OnnxValue Residual(OnnxModuleWriter w, nn.Module block, string path, OnnxValue x, Func<OnnxValue, OnnxValue> main)
    {
        var output = main(x);
        bool downsamples = block.named_children().Any(c => c.name == "downsample");
        var identity = downsamples ? w.Child(block, path, "downsample", x) : x;
        return w.Relu(path, w.Add(path, output, identity));
    }
}
