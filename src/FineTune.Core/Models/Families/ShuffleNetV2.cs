using FineTune.Core.Export;
using FineTune.Core.Weights;

namespace FineTune.Core.Models.Families;

/// <summary>
/// torchvision's ShuffleNet V2 (<c>models/shufflenetv2.py</c>), built by <see cref="Models.ShuffleNetV2"/>: stages conv1, stage2,
/// stage3, stage4, conv5 for <c>last:N</c> (the top-level children). Its batch norms all follow a convolution inside a
/// Sequential, so fusion needs no pairs.
/// </summary>
/// <remarks>Weights tables: <c>tests/FineTune.Core.Tests/Reference/weights_table.py csharp shufflenet_v2_x0_5 shufflenet_v2_x1_0 shufflenet_v2_x1_5 shufflenet_v2_x2_0</c>.</remarks>
internal static class ShuffleNetV2Family
{
    public static ModelArchitecture Architecture { get; } = new("ShuffleNetV2",
    [
        new("shufflenet_v2_x0_5", Builder("shufflenet_v2_x0_5"), "fc", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/shufflenetv2_x0.5-f707e7126e.pth", Preprocessing.ImageNet(256, 224), 1000, 1366792),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
        new("shufflenet_v2_x1_0", Builder("shufflenet_v2_x1_0"), "fc", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/shufflenetv2_x1-5666bf0f80.pth", Preprocessing.ImageNet(256, 224), 1000, 2278604),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
        new("shufflenet_v2_x1_5", Builder("shufflenet_v2_x1_5"), "fc", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/shufflenetv2_x1_5-3c479a10.pth", Preprocessing.ImageNet(232, 224), 1000, 3503624),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
        new("shufflenet_v2_x2_0", Builder("shufflenet_v2_x2_0"), "fc", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/shufflenetv2_x2_0-8be3c8ee.pth", Preprocessing.ImageNet(232, 224), 1000, 7393996),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
    ])
    {
        ForwardSteps = new Dictionary<string, ForwardStep[]>
        {
            [nameof(Models.ShuffleNetV2)] = ["conv1", "maxpool", "stage2", "stage3", "stage4", "conv5", ForwardStep.Op(x => x.mean([2, 3])), "fc"],
        },
        OnnxForwards = new Dictionary<string, OnnxForward>
        {
            [nameof(Models.ShuffleNetV2)] = (w, m, path, x) =>
                w.Child(m, path, "fc", w.ReduceMean(path, w.Children(m, path, x, "conv1", "maxpool", "stage2", "stage3", "stage4", "conv5"), 2, 3)),
            // A stride-2 block (with branch1) transforms all channels twice; a stride-1 block passes the first half through.
            ["InvertedResidual"] = (w, m, path, x) =>
            {
                long channels = x.Trace.shape[1];
                var joined = m.named_children().Any(c => c.name == "branch1")
                    ? w.Concat(path, [w.Child(m, path, "branch1", x), w.Child(m, path, "branch2", x)], 1)
                    : w.Concat(path, [w.Slice(path, x, 1, 0, channels / 2), w.Child(m, path, "branch2", w.Slice(path, x, 1, channels / 2, channels))], 1);
                return ChannelShuffle(w, path, joined);
            },
        },
    };

    /// <summary>The builder's constructor, owned by <see cref="Models.ShuffleNetV2.Builders"/>.</summary>
    private static Func<Models.ShuffleNetV2> Builder(string name) => Models.ShuffleNetV2.Builders.Single(b => b.Name == name).Create;

    /// <summary>[n, 2, c/2, h, w] transposed to [n, c/2, 2, h, w]: the two branches' channels interleaved.</summary>
    private static OnnxValue ChannelShuffle(OnnxModuleWriter w, string path, OnnxValue x)
    {
        long channels = x.Trace.shape[1], height = x.Trace.shape[2], width = x.Trace.shape[3];
        var grouped = w.Reshape(path, x, 1, 2, channels / 2, height, width);
        return w.Reshape(path, w.Transpose(path, grouped, 0, 2, 1, 3, 4), 1, channels, height, width);
    }
}
