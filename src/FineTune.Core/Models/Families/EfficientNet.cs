using FineTune.Core.Data;
using FineTune.Core.Export;
using FineTune.Core.Weights;
using static TorchSharp.torch;

namespace FineTune.Core.Models.Families;

/// <summary>
/// torchvision's EfficientNet B0–B7 and V2 S/M/L (<c>models/efficientnet.py</c>), built by <see cref="Models.EfficientNet"/>:
/// stages features.0..N for <c>last:N</c> (stem, one per block stage, the 1×1 head convolution). Every batch norm
/// sits in a Conv2dNormActivation Sequential, so fusion needs no pairs.
/// </summary>
/// <remarks>Weights tables: <c>tests/FineTune.Core.Tests/Reference/weights_table.py csharp efficientnet_b0 efficientnet_b1 efficientnet_b2 efficientnet_b3 efficientnet_b4 efficientnet_b5 efficientnet_b6 efficientnet_b7 efficientnet_v2_s efficientnet_v2_m efficientnet_v2_l</c>.</remarks>
internal static class EfficientNetFamily
{
    public static ModelArchitecture Architecture { get; } = new("EfficientNet",
    [
        new("efficientnet_b0", Builder("efficientnet_b0"), "classifier.1", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/efficientnet_b0_rwightman-3dd342df.pth", Preprocessing.ImageNet(256, 224, Interpolation.Bicubic), 1000, 5288548),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
        new("efficientnet_b1", Builder("efficientnet_b1"), "classifier.1", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/efficientnet_b1_rwightman-533bc792.pth", Preprocessing.ImageNet(256, 240, Interpolation.Bicubic), 1000, 7794184),
                new("IMAGENET1K_V2", "https://download.pytorch.org/models/efficientnet_b1-c27df63c.pth", Preprocessing.ImageNet(255, 240), 1000, 7794184),
            ],
            DefaultWeights = "IMAGENET1K_V2",
        },
        new("efficientnet_b2", Builder("efficientnet_b2"), "classifier.1", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/efficientnet_b2_rwightman-bcdf34b7.pth", Preprocessing.ImageNet(288, 288, Interpolation.Bicubic), 1000, 9109994),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
        new("efficientnet_b3", Builder("efficientnet_b3"), "classifier.1", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/efficientnet_b3_rwightman-cf984f9c.pth", Preprocessing.ImageNet(320, 300, Interpolation.Bicubic), 1000, 12233232),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
        new("efficientnet_b4", Builder("efficientnet_b4"), "classifier.1", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/efficientnet_b4_rwightman-7eb33cd5.pth", Preprocessing.ImageNet(384, 380, Interpolation.Bicubic), 1000, 19341616),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
        new("efficientnet_b5", Builder("efficientnet_b5"), "classifier.1", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/efficientnet_b5_lukemelas-b6417697.pth", Preprocessing.ImageNet(456, 456, Interpolation.Bicubic), 1000, 30389784),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
        new("efficientnet_b6", Builder("efficientnet_b6"), "classifier.1", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/efficientnet_b6_lukemelas-c76e70fd.pth", Preprocessing.ImageNet(528, 528, Interpolation.Bicubic), 1000, 43040704),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
        new("efficientnet_b7", Builder("efficientnet_b7"), "classifier.1", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/efficientnet_b7_lukemelas-dcc49843.pth", Preprocessing.ImageNet(600, 600, Interpolation.Bicubic), 1000, 66347960),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
        new("efficientnet_v2_s", Builder("efficientnet_v2_s"), "classifier.1", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/efficientnet_v2_s-dd5fe13b.pth", Preprocessing.ImageNet(384, 384), 1000, 21458488),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
        new("efficientnet_v2_m", Builder("efficientnet_v2_m"), "classifier.1", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/efficientnet_v2_m-dc08266a.pth", Preprocessing.ImageNet(480, 480), 1000, 54139356),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
        new("efficientnet_v2_l", Builder("efficientnet_v2_l"), "classifier.1", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/efficientnet_v2_l-59c71312.pth", new Preprocessing(480, 480, ChannelOrder.Rgb, 1f / 255f, [0.5f, 0.5f, 0.5f], [0.5f, 0.5f, 0.5f]) { Interpolation = Interpolation.Bicubic }, 1000, 118515272),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
    ])
    {
        ForwardSteps = new Dictionary<string, ForwardStep[]>
        {
            [nameof(EfficientNet)] = ["features", "avgpool", ForwardStep.Flatten, "classifier"],
        },
        OnnxForwards = new Dictionary<string, OnnxForward>
        {
            [nameof(EfficientNet)] = (w, m, path, x) => w.Child(m, path, "classifier", w.Flatten(path, w.Children(m, path, x, "features", "avgpool"))),
            ["MBConv"] = Residual,
            ["FusedMBConv"] = Residual,
        },
    };

    private static Func<nn.Module<Tensor, Tensor>> Builder(string name) => Models.EfficientNet.Builders.Single(b => b.Name == name).Create;

    /// <summary>The block adds its input (stochastic depth is the identity in inference) exactly when the shape stays.</summary>
    private static OnnxValue Residual(OnnxModuleWriter w, nn.Module m, string path, OnnxValue x)
    {
        var output = w.Child(m, path, "block", x);
        return output.Trace.shape.SequenceEqual(x.Trace.shape) ? w.Add(path, output, x) : output;
    }
}
