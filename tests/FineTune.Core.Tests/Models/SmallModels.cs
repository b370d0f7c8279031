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
    /// Each residual block's last batch norm (not its shortcut's) scaled by a quarter, so that a block adds a correction to
    /// its input rather than doubling it (torchvision's zero_init_residual starts those scales at 0): with full-scale
    /// branches a random resnet152 amplifies float32 rounding by ~13% per block, from 7e-7 relative after its first block
    /// to 3e-4 after its fiftieth, and a random EfficientNet-V2-L float64 rounding to 1e-7; a property of those random
    /// weights and not of any implementation.
    /// </summary>
    public static void DampResidualBranches(FineTuneModel model)
    {
        using var noGrad = no_grad();
        foreach (var (_, block) in model.Module.named_modules().Where(m => m.module.GetType().Name is "BasicBlock" or "Bottleneck" or "InvertedResidual" or "MBConv" or "FusedMBConv"))
        {
            var last = (BatchNorm2d)block.named_modules().Last(m => m.module is BatchNorm2d && !m.name.StartsWith("downsample", StringComparison.Ordinal)).module;
            last.weight.mul_(0.25f);
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
