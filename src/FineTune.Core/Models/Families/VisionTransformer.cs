using FineTune.Core.Data;
using FineTune.Core.Export.Forwards;
using FineTune.Core.Weights;

namespace FineTune.Core.Models.Families;

/// <summary>
/// torchvision's Vision Transformer (<c>models/vision_transformer.py</c>), built by <see cref="Models.VisionTransformer"/>:
/// stages conv_proj, each encoder layer, the encoder's final norm; the head heads.head takes the class token. The position
/// embedding has one entry per patch, so the layout is built for the crop of the weights' preprocessing
/// (<see cref="ModelFamily.For"/>), as torchvision builds it with <c>image_size=weights.meta["min_size"]</c>: 224 pixels,
/// the SWAG end-to-end weights 384 (vit_b_16), 512 (vit_l_16) or 518 (vit_h_14, its DEFAULT).
/// </summary>
/// <remarks>Weights tables: <c>tests/FineTune.Core.Tests/Reference/weights_table.py csharp vit_b_16 vit_b_32 vit_l_16 vit_l_32 vit_h_14</c>.</remarks>
internal static class VisionTransformerFamily
{
    public static ModelArchitecture Architecture { get; } = new("VisionTransformer",
    [
        Builder("vit_b_16", size => Models.VisionTransformer.VitB16(size), 12) with
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/vit_b_16-c867db91.pth", Preprocessing.ImageNet(256, 224), 1000, 86567656),
                new("IMAGENET1K_SWAG_E2E_V1", "https://download.pytorch.org/models/vit_b_16_swag-9ac1b537.pth", Preprocessing.ImageNet(384, 384, Interpolation.Bicubic), 1000, 86859496),
                new("IMAGENET1K_SWAG_LINEAR_V1", "https://download.pytorch.org/models/vit_b_16_lc_swag-4e70ced5.pth", Preprocessing.ImageNet(224, 224, Interpolation.Bicubic), 1000, 86567656),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
        Builder("vit_b_32", size => Models.VisionTransformer.VitB32(size), 12) with
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/vit_b_32-d86f8d99.pth", Preprocessing.ImageNet(256, 224), 1000, 88224232),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
        Builder("vit_l_16", size => Models.VisionTransformer.VitL16(size), 24) with
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/vit_l_16-852ce7e3.pth", Preprocessing.ImageNet(242, 224), 1000, 304326632),
                new("IMAGENET1K_SWAG_E2E_V1", "https://download.pytorch.org/models/vit_l_16_swag-4f3808c9.pth", Preprocessing.ImageNet(512, 512, Interpolation.Bicubic), 1000, 305174504),
                new("IMAGENET1K_SWAG_LINEAR_V1", "https://download.pytorch.org/models/vit_l_16_lc_swag-4d563306.pth", Preprocessing.ImageNet(224, 224, Interpolation.Bicubic), 1000, 304326632),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
        Builder("vit_l_32", size => Models.VisionTransformer.VitL32(size), 24) with
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/vit_l_32-c7638314.pth", Preprocessing.ImageNet(256, 224), 1000, 306535400),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
        Builder("vit_h_14", size => Models.VisionTransformer.VitH14(size), 32) with
        {
            Weights =
            [
                new("IMAGENET1K_SWAG_E2E_V1", "https://download.pytorch.org/models/vit_h_14_swag-80465313.pth", Preprocessing.ImageNet(518, 518, Interpolation.Bicubic), 1000, 633470440),
                new("IMAGENET1K_SWAG_LINEAR_V1", "https://download.pytorch.org/models/vit_h_14_lc_swag-c1eb923e.pth", Preprocessing.ImageNet(224, 224, Interpolation.Bicubic), 1000, 632045800),
            ],
            DefaultWeights = "IMAGENET1K_SWAG_E2E_V1",
        },
    ])
    {
        OnnxForwards = VisionTransformerOnnx.Forwards,
    };

    private static ModelFamily Builder(string name, Func<int, TorchSharp.torch.nn.Module<TorchSharp.torch.Tensor, TorchSharp.torch.Tensor>> create, int layers) =>
        new(name, () => create(224), "heads.head", Preprocessing.ImageNet())
        {
            Stages = _ => ["conv_proj", .. Enumerable.Range(0, layers).Select(i => $"encoder.layers.encoder_layer_{i}"), "encoder.ln"],
            // torchvision's published ViT weights name the MLP's linears as before 0.14.
            UpgradeKey = Models.VisionTransformer.UpgradeLegacyKey,
            LayoutForSize = new(create, (classes, size) => $"torchvision.models.{name}(num_classes={classes}, image_size={size})"),
        };
}
