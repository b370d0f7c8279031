using FineTune.Core.Data;
using FineTune.Core.Export.Forwards;
using FineTune.Core.Weights;

namespace FineTune.Core.Models.Families;

/// <summary>
/// torchvision's Swin Transformer v1 and v2 (<c>models/swin_transformer.py</c>), built by <see cref="SwinTransformer"/>:
/// stages features.0 (patch embedding) to features.7 (stages and patch merging alternate), then the final norm.
/// </summary>
/// <remarks>Weights tables: <c>tests/FineTune.Core.Tests/Reference/weights_table.py csharp swin_t swin_s swin_b swin_v2_t swin_v2_s swin_v2_b</c>.</remarks>
internal static class SwinFamily
{
    public static ModelArchitecture Architecture { get; } = new("SwinTransformer",
    [
        Builder("swin_t", () => SwinTransformer.SwinT()) with
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/swin_t-704ceda3.pth", Preprocessing.ImageNet(232, 224, Interpolation.Bicubic), 1000, 28288354),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
        Builder("swin_s", () => SwinTransformer.SwinS()) with
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/swin_s-5e29d889.pth", Preprocessing.ImageNet(246, 224, Interpolation.Bicubic), 1000, 49606258),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
        Builder("swin_b", () => SwinTransformer.SwinB()) with
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/swin_b-68c6b09e.pth", Preprocessing.ImageNet(238, 224, Interpolation.Bicubic), 1000, 87768224),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
        Builder("swin_v2_t", () => SwinTransformer.SwinV2T()) with
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/swin_v2_t-b137f0e2.pth", Preprocessing.ImageNet(260, 256, Interpolation.Bicubic), 1000, 28351570),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
        Builder("swin_v2_s", () => SwinTransformer.SwinV2S()) with
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/swin_v2_s-637d8ceb.pth", Preprocessing.ImageNet(260, 256, Interpolation.Bicubic), 1000, 49737442),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
        Builder("swin_v2_b", () => SwinTransformer.SwinV2B()) with
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/swin_v2_b-781e5279.pth", Preprocessing.ImageNet(272, 256, Interpolation.Bicubic), 1000, 87930848),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
    ])
    {
        OnnxForwards = SwinOnnx.Forwards,
    };

    private static ModelFamily Builder(string name, Func<TorchSharp.torch.nn.Module<TorchSharp.torch.Tensor, TorchSharp.torch.Tensor>> create) =>
        new(name, create, "head", Preprocessing.ImageNet())
        {
            Stages = _ => [.. Enumerable.Range(0, 8).Select(i => $"features.{i}"), "norm"],
        };
}
