using FineTune.Core.Models;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace FineTune.Core.Tests.Models;

/// <summary>What tests comparing two ways of running a family's network on real photos set up alike.</summary>
internal static class SmallModels
{
    /// <summary>
    /// The family's preprocessing at <paramref name="size"/> pixels (resized to 8/7 of it first, as 256 is of 224), except
    /// for a family with a mean image, whose size that image fixes.
    /// </summary>
    public static Preprocessing PreprocessingAt(ModelFamily family, int size) => family.Preprocessing.MeanImage is null
        ? family.Preprocessing with { ResizeSize = size * 8 / 7, CropSize = size }
        : family.Preprocessing;

    /// <summary>
    /// Batch-norm scales and shifts drawn away from 1 and 0, so that a misplaced one shows, and momentum 1, so that one
    /// training-mode pass sets the running statistics to that batch's.
    /// </summary>
    public static void RandomiseBatchNorms(FineTuneModel model, Generator generator)
    {
        using var noGrad = no_grad();
        foreach (var norm in model.Module.modules().OfType<BatchNorm2d>())
        {
            long n = norm.num_features;
            norm.weight.copy_(rand(n, generator: generator) + 0.5f);
            norm.bias!.copy_(randn(n, generator: generator) * 0.1f);
            norm.momentum = 1;
        }
    }

    /// <summary>
    /// 64 pixels, but 224 for MaxViT (its 7×7 partitions) and 4 patches a side for ViT, whose layout is built for the input's
    /// size (<see cref="ModelFamily.For"/>; torchvision's ViT names end with the patch size: vit_h_14).
    /// </summary>
    public static int SmallestInput(ModelFamily family) => family.Architecture switch
    {
        "MaxVit" => 224,
        "VisionTransformer" => 4 * int.Parse(family.Name[(family.Name.LastIndexOf('_') + 1)..], System.Globalization.CultureInfo.InvariantCulture),
        _ => 64,
    };
}
