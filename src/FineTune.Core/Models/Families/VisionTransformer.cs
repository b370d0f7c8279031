using FineTune.Core.Data;
using FineTune.Core.Export.Forwards;
using FineTune.Core.Weights;

namespace FineTune.Core.Models.Families;

/// <summary>
/// torchvision's Vision Transformer (<c>models/vision_transformer.py</c>), built by <see cref="Models.VisionTransformer"/> for
/// 224-pixel images: stages conv_proj, each encoder layer, the encoder's final norm; the head heads.head takes the class token.
/// The SWAG end-to-end weights (IMAGENET1K_SWAG_E2E_V1, 384 to 518 pixels) need a layout built for their size, which a
/// builder does not have: they are not listed, and so neither is vit_h_14, whose DEFAULT they are.
/// </summary>
/// <remarks>Weights tables: <c>tests/FineTune.Core.Tests/Reference/weights_table.py csharp vit_b_16 vit_b_32 vit_l_16 vit_l_32</c>, less the SWAG_E2E tags.</remarks>
internal static class VisionTransformerFamily
{
    public static ModelArchitecture Architecture { get; } = new("VisionTransformer",
    [
        Builder("vit_b_16", () => Models.VisionTransformer.VitB16(), 12) with
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/vit_b_16-c867db91.pth", Preprocessing.ImageNet(256, 224), 1000, 86567656),
                new("IMAGENET1K_SWAG_LINEAR_V1", "https://download.pytorch.org/models/vit_b_16_lc_swag-4e70ced5.pth", Preprocessing.ImageNet(224, 224, Interpolation.Bicubic), 1000, 86567656),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
        Builder("vit_b_32", () => Models.VisionTransformer.VitB32(), 12) with
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/vit_b_32-d86f8d99.pth", Preprocessing.ImageNet(256, 224), 1000, 88224232),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
        Builder("vit_l_16", () => Models.VisionTransformer.VitL16(), 24) with
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/vit_l_16-852ce7e3.pth", Preprocessing.ImageNet(242, 224), 1000, 304326632),
                new("IMAGENET1K_SWAG_LINEAR_V1", "https://download.pytorch.org/models/vit_l_16_lc_swag-4d563306.pth", Preprocessing.ImageNet(224, 224, Interpolation.Bicubic), 1000, 304326632),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
        Builder("vit_l_32", () => Models.VisionTransformer.VitL32(), 24) with
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/vit_l_32-c7638314.pth", Preprocessing.ImageNet(256, 224), 1000, 306535400),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
    ])
    {
        OnnxForwards = VisionTransformerOnnx.Forwards,
    };

    private static ModelFamily Builder(string name, Func<TorchSharp.torch.nn.Module<TorchSharp.torch.Tensor, TorchSharp.torch.Tensor>> create, int layers) =>
        new(name, create, "heads.head", Preprocessing.ImageNet())
        {
            Stages = _ => ["conv_proj", .. Enumerable.Range(0, layers).Select(i => $"encoder.layers.encoder_layer_{i}"), "encoder.ln"],
            // torchvision's published ViT weights name the MLP's linears as before 0.14.
            UpgradeKey = Models.VisionTransformer.UpgradeLegacyKey,
        };
}
