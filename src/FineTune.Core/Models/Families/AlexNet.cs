using FineTune.Core.Weights;
using static TorchSharp.torchvision.models;

namespace FineTune.Core.Models.Families;

/// <summary>torchvision's AlexNet (<c>models/alexnet.py</c>), built by TorchSharp's TorchVision: stages features.N for <c>last:N</c>.</summary>
/// <remarks>Weights tables: <c>tests/FineTune.Core.Tests/Reference/weights_table.py csharp alexnet</c>.</remarks>
internal static class AlexNetFamily
{
    public static ModelArchitecture Architecture { get; } = new("AlexNet",
    [
        new("alexnet", () => alexnet(), "classifier.6", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth", Preprocessing.ImageNet(256, 224), 1000, 61100840),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
    ])
    {
        ForwardSteps = new Dictionary<string, ForwardStep[]>
        {
            ["AlexNet"] = ["features", "avgpool", ForwardStep.Flatten, "classifier"],
        },
        OnnxForwards = new Dictionary<string, OnnxForward>
        {
            ["AlexNet"] = (w, m, path, x) => w.Child(m, path, "classifier", w.Flatten(path, w.Children(m, path, x, "features", "avgpool"))),
        },
    };
}
