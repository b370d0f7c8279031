using FineTune.Core.Export;
using FineTune.Core.Weights;
using static TorchSharp.torch;

namespace FineTune.Core.Models.Families;

/// <summary>
/// torchvision's ConvNeXt (<c>models/convnext.py</c>), built by <see cref="Models.ConvNeXt"/>: stages features.0..7
/// (stem, stage, downsample, ... stage) and classifier (its LayerNorm2d before the head) for <c>last:N</c>. Layer
/// norms only: nothing to fuse.
/// </summary>
/// <remarks>Weights tables: <c>tests/FineTune.Core.Tests/Reference/weights_table.py csharp convnext_tiny convnext_small convnext_base convnext_large</c>.</remarks>
internal static class ConvNeXtFamily
{
    public static ModelArchitecture Architecture { get; } = new("ConvNeXt",
    [
        new("convnext_tiny", Builder("convnext_tiny"), "classifier.2", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/convnext_tiny-983f1562.pth", Preprocessing.ImageNet(236, 224), 1000, 28589128),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
        new("convnext_small", Builder("convnext_small"), "classifier.2", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/convnext_small-0c510722.pth", Preprocessing.ImageNet(230, 224), 1000, 50223688),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
        new("convnext_base", Builder("convnext_base"), "classifier.2", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/convnext_base-6075fbad.pth", Preprocessing.ImageNet(232, 224), 1000, 88591464),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
        new("convnext_large", Builder("convnext_large"), "classifier.2", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/convnext_large-ea097f82.pth", Preprocessing.ImageNet(232, 224), 1000, 197767336),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
    ])
    {
        ForwardSteps = new Dictionary<string, ForwardStep[]>
        {
            [nameof(ConvNeXt)] = ["features", "avgpool", "classifier"],
        },
        OnnxForwards = new Dictionary<string, OnnxForward>
        {
            [nameof(ConvNeXt)] = (w, m, path, x) => w.Children(m, path, x, "features", "avgpool", "classifier"),
            // x + layer_scale·block(x); stochastic depth is the identity in inference.
            ["CNBlock"] = (w, m, path, x) =>
            {
                var branch = w.Child(m, path, "block", x);
                var scale = OnnxModuleWriter.Parameter(m, "layer_scale");
                return w.Add(path, w.Graph.Node("Mul", path, [branch.Name, w.Graph.Initializer(path + ".layer_scale", scale)], branch.Trace * scale), x);
            },
        },
    };

    private static Func<nn.Module<Tensor, Tensor>> Builder(string name) => Models.ConvNeXt.Builders.Single(b => b.Name == name).Create;
}
