using FineTune.Core.Export;
using FineTune.Core.Weights;
using static TorchSharp.torch;

namespace FineTune.Core.Models.Families;

/// <summary>
/// torchvision's SqueezeNet (<c>models/squeezenet.py</c>), built by <see cref="Models.SqueezeNet"/>: stages features.N for
/// <c>last:N</c>. Its head is a 1×1 convolution (<c>classifier.1</c>) that ReLU, global average pooling and a flatten
/// follow (<see cref="ModelFamily.AfterHead"/>); it has no batch norm, so nothing to fuse.
/// </summary>
/// <remarks>Weights tables: <c>tests/FineTune.Core.Tests/Reference/weights_table.py csharp squeezenet1_0 squeezenet1_1</c>.</remarks>
internal static class SqueezeNetFamily
{
    public static ModelArchitecture Architecture { get; } = new("SqueezeNet",
    [
        new("squeezenet1_0", Builder("squeezenet1_0"), "classifier.1", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/squeezenet1_0-b66bff10.pth", Preprocessing.ImageNet(256, 224), 1000, 1248424),
            ],
            DefaultWeights = "IMAGENET1K_V1",
            AfterHead = AfterHead,
        },
        new("squeezenet1_1", Builder("squeezenet1_1"), "classifier.1", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth", Preprocessing.ImageNet(256, 224), 1000, 1235496),
            ],
            DefaultWeights = "IMAGENET1K_V1",
            AfterHead = AfterHead,
        },
    ])
    {
        ForwardSteps = new Dictionary<string, ForwardStep[]>
        {
            [nameof(Models.SqueezeNet)] = ["features", "classifier", ForwardStep.Flatten],
        },
        OnnxForwards = new Dictionary<string, OnnxForward>
        {
            [nameof(Models.SqueezeNet)] = (w, m, path, x) => w.Flatten(path, w.Children(m, path, x, "features", "classifier")),
            ["Fire"] = (w, m, path, x) =>
            {
                var squeezed = w.Children(m, path, x, "squeeze", "squeeze_activation");
                return w.Concat(path, [w.Children(m, path, squeezed, "expand1x1", "expand1x1_activation"),
                    w.Children(m, path, squeezed, "expand3x3", "expand3x3_activation")], 1);
            },
        },
    };

    /// <summary>The builder's constructor, owned by <see cref="Models.SqueezeNet.Builders"/>.</summary>
    private static Func<Models.SqueezeNet> Builder(string name) => Models.SqueezeNet.Builders.Single(b => b.Name == name).Create;

    /// <summary>What follows the head in torchvision's classifier and forward: ReLU, AdaptiveAvgPool2d(1), flatten.</summary>
    private static Tensor AfterHead(Tensor headOutput)
    {
        using var relu = nn.functional.relu(headOutput);
        using var pooled = nn.functional.adaptive_avg_pool2d(relu, [1, 1]);
        return pooled.flatten(1);
    }
}
