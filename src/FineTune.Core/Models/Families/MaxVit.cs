using FineTune.Core.Data;
using FineTune.Core.Export.Forwards;
using FineTune.Core.Weights;

namespace FineTune.Core.Models.Families;

/// <summary>
/// torchvision's MaxViT (<c>models/maxvit.py</c>), built by <see cref="Models.MaxVit"/> for 224-pixel images: stages stem,
/// blocks.0 to blocks.3, then the classifier's pre-logits (LayerNorm, Linear, Tanh) before its bias-less head classifier.5.
/// </summary>
/// <remarks>Weights tables: <c>tests/FineTune.Core.Tests/Reference/weights_table.py csharp maxvit_t</c>.</remarks>
internal static class MaxVitFamily
{
    public static ModelArchitecture Architecture { get; } = new("MaxVit",
    [
        new("maxvit_t", () => Models.MaxVit.MaxVitT(), "classifier.5", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/maxvit_t-bc5ab103.pth", Preprocessing.ImageNet(224, 224, Interpolation.Bicubic), 1000, 30919624),
            ],
            DefaultWeights = "IMAGENET1K_V1",
            // "classifier" holds the head too, which trains anyway.
            Stages = _ => ["stem", "blocks.0", "blocks.1", "blocks.2", "blocks.3", "classifier"],
        },
    ])
    {
        OnnxForwards = MaxVitOnnx.Forwards,
    };
}
