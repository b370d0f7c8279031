using System.Globalization;
using FineTune.Core.Data;
using FineTune.Core.Models;
using FineTune.Core.Tests.Reference;
using FineTune.Core.Training;
using static TorchSharp.torch;

namespace FineTune.Core.Tests.Data;

/// <summary>
/// The random draws of augmentation: in the ranges torchvision's and timm's draws have, spread over them, and the
/// same for the same seed. Bounds are wide statistical ones (thousands of draws), never hit by a correct draw.
/// </summary>
public sealed class AugmentationTests
{
    private static readonly Preprocessing Small = ModelRegistry.Get("resnet18").Preprocessing with { ResizeSize = 72, CropSize = 64 };

    [Fact]
    public void RandomResizedCropDrawsAsTorchvisionsGetParams()
    {
        const int width = 300, height = 200, count = 4000;
        var augmentation = new Augmentation();
        var random = new Random(1);
        var scales = new double[count];
        var ratios = new double[count];
        for (int i = 0; i < count; i++)
        {
            var (left, top, w, h) = augmentation.CropRectangle(width, height, random);
            Assert.True(left >= 0 && top >= 0 && left + w <= width && top + h <= height, $"({left}, {top}) {w}×{h} leaves the image");
            scales[i] = (double)w * h / (width * height);
            ratios[i] = Math.Log((double)w / h);
        }
        // torchvision's draws of the same sizes (its own generator, so statistics, not values): the standard error
        // of each mean is under 0.004, of each share under 0.007.
        var expected = PythonReference.RunScript(Path.Combine(AppContext.BaseDirectory, "Reference", "augmentation_reference.py"),
            "crops", $"{width}", $"{height}", $"{count}").Split('\n').Select(v => double.Parse(v, CultureInfo.InvariantCulture)).ToArray();
        double[] actual = [scales.Average(), StandardDeviation(scales), scales.Count(s => s < 0.2) / (double)count, ratios.Average(), StandardDeviation(ratios)];
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) < 0.025, $"statistic {i}: ours {actual[i]:F4}, torchvision's {expected[i]:F4}");
        Assert.InRange(scales.Min(), 0.08 * 0.95, 0.1);
        Assert.All(ratios, r => Assert.InRange(r, Math.Log(3.0 / 4) - 0.03, Math.Log(4.0 / 3) + 0.03));
    }

    private static double StandardDeviation(double[] values)
    {
        double mean = values.Average();
        return Math.Sqrt(values.Average(v => (v - mean) * (v - mean)));
    }

    [Fact]
    public void TrivialAugmentWideDrawsEveryOpAndBinWithBothSigns()
    {
        var seen = new HashSet<(AugmentOp, double)>();
        var random = new Random(2);
        var counts = new int[Enum.GetValues<AugmentOp>().Length];
        for (int i = 0; i < 14_000; i++)
        {
            var op = (AugmentOp)random.Next(counts.Length);
            counts[(int)op]++;
            if (AutoAugment.HasMagnitude(op)) seen.Add((op, TrivialAugmentWide.Magnitude(op, random.Next(TrivialAugmentWide.Bins))));
        }
        Assert.All(counts, n => Assert.InRange(n, 800, 1200));
        // The policy itself: every op's output appears, from the same seed the same.
        var image = Photo();
        var first = Enumerable.Range(0, 60).Select(i => new TrivialAugmentWide().Apply(image, new Random(i)).Pixels).ToList();
        var again = Enumerable.Range(0, 60).Select(i => new TrivialAugmentWide().Apply(image, new Random(i)).Pixels).ToList();
        Assert.Equal(first, again);
        Assert.True(first.Count(p => p.AsSpan().SequenceEqual(image.Pixels)) < 15, "too many unchanged images");
        Assert.Equal(31, seen.Count(s => s.Item1 == AugmentOp.Rotate));
        Assert.Equal(8.0, TrivialAugmentWide.Magnitude(AugmentOp.Posterize, 0));
        Assert.Equal(2.0, TrivialAugmentWide.Magnitude(AugmentOp.Posterize, 30));
    }

    [Fact]
    public void RandAugmentNamesParseAsTimmsAndBadOnesSayWhy()
    {
        Assert.Equal(new RandAugment(9, 2, 0.5), AutoAugment.Parse("rand-m9-mstd0.5"));
        Assert.Equal(new RandAugment(7, 3), AutoAugment.Parse("rand-m7-n3"));
        Assert.Equal("rand-m9-mstd0.5", AutoAugment.Parse("rand-m9-mstd0.5").Name);
        Assert.IsType<TrivialAugmentWide>(AutoAugment.Parse("trivialaugment"));
        Assert.Contains("trivialaugment", Assert.Throws<FormatException>(() => AutoAugment.Parse("autoaugment")).Message);
        Assert.Contains("0-10", Assert.Throws<FormatException>(() => AutoAugment.Parse("rand-m11")).Message);
        // timm's level 9 of 10 is torchvision's bin 27 of 31: rotation 27°, shear 0.27.
        Assert.Equal(27.0, RandAugment.Magnitude(AugmentOp.Rotate, 9, 64, 64), 9);
        Assert.Equal(4.0, RandAugment.Magnitude(AugmentOp.Posterize, 9, 64, 64));
        var image = Photo();
        Assert.Equal(new RandAugment(9, 2, 0.5).Apply(image, new Random(5)).Pixels, new RandAugment(9, 2, 0.5).Apply(image, new Random(5)).Pixels);
    }

    [Fact]
    public void RandomErasingCoversTimmsAreasAndAspects()
    {
        int size = 64, erased = 0;
        var augmentation = new Augmentation(EraseProbability: 0.25, EraseMode: ErasingMode.Const);
        var areas = new List<double>();
        for (int seed = 0; seed < 2000; seed++)
        {
            var input = new float[3 * size * size];
            Array.Fill(input, 7f);
            augmentation.Erase(input, size, new Random(seed));
            int zeros = input.Count(v => v == 0);
            if (zeros == 0) continue;
            erased++;
            Assert.Equal(0, zeros % 3);
            areas.Add(zeros / 3.0 / (size * size));
        }
        Assert.InRange(erased, 400, 600);
        Assert.All(areas, a => Assert.InRange(a, 0.015, 0.36));
        Assert.InRange(areas.Average(), 0.12, 0.22);

        var pixel = new float[3 * size * size];
        new Augmentation(EraseProbability: 1).Erase(pixel, size, new Random(3));
        var noise = pixel.Where(v => v != 0).ToArray();
        Assert.True(noise.Length > 100);
        Assert.InRange(noise.Average(), -0.2, 0.2);
        Assert.InRange(Math.Sqrt(noise.Average(v => v * v)), 0.8, 1.2);
    }

    [Fact]
    public void MixupAndCutmixMixImagesAndTargetsAlike()
    {
        using var scope = NewDisposeScope();
        var images = arange(4 * 3 * 8 * 8, float32).reshape(4, 3, 8, 8);
        var labels = tensor(new long[] { 0, 1, 2, 1 });
        var both = new Augmentation(MixupAlpha: 0.8, CutmixAlpha: 1.0);
        int cutmixes = 0;
        var mixupLambdas = new List<double>();
        for (int seed = 0; seed < 400; seed++)
        {
            var (mixed, targets, lambda) = Mixup.Apply(both, images, labels, 3, 0.1, new Random(seed));
            Assert.True(targets.sum(1).allclose(ones(4), atol: 1e-6));
            var expectedTargets = (nn.functional.one_hot(labels, 3).to(float32) * 0.9f + 0.1f / 3) * lambda
                + (nn.functional.one_hot(labels.flip(0), 3).to(float32) * 0.9f + 0.1f / 3) * (1 - lambda);
            Assert.True(targets.allclose(expectedTargets, atol: 1e-6));
            var fromFirst = mixed.eq(images).to(float32).mean().item<float>();
            if (fromFirst > 0.999 || lambda == 1) continue;
            bool isCut = mixed.eq(images).logical_or(mixed.eq(images.flip(0))).all().item<bool>();
            if (isCut)
            {
                cutmixes++;
                // CutMix's λ is the share of pixels kept from the image itself (timm's correct_lam).
                Assert.Equal(lambda, (double)mixed[0].eq(images[0]).to(float32).mean().item<float>(), 5);
            }
            else
            {
                Assert.True(mixed.allclose(images * lambda + images.flip(0) * (1 - lambda), atol: 1e-3));
                mixupLambdas.Add(lambda);
            }
        }
        Assert.InRange(cutmixes, 140, 260);
        Assert.InRange(mixupLambdas.Average(), 0.4, 0.6);
        Assert.Equal(Mixup.Draw(both, 8, 8, new Random(9)), Mixup.Draw(both, 8, 8, new Random(9)));
        Assert.Equal((1.0, null), Mixup.Draw(new Augmentation(MixupAlpha: 0.8, MixupProbability: 0), 8, 8, new Random(9)));
        var betas = Enumerable.Range(0, 4000).Select(i => Mixup.Beta(0.8, new Random(i))).ToArray();
        Assert.All(betas, b => Assert.InRange(b, 0, 1));
        // Beta(0.8, 0.8): mean ½, variance 1 / (4 · 2.6) ≈ 0.096.
        Assert.InRange(betas.Average(), 0.47, 0.53);
        Assert.InRange(betas.Average(b => (b - 0.5) * (b - 0.5)), 0.085, 0.107);
    }

    [Fact]
    public void AnAugmentedViewHasTheInputSizeAndReplaysFromItsSeed()
    {
        var augmentation = new Augmentation(AutoAugment: new TrivialAugmentWide(), EraseProbability: 1);
        var photo = ImageLoader.Decode(TuxPaintStamps.Images("food", 1)[0]);
        var view = augmentation.Apply(photo, Small, new Random(4));
        Assert.Equal((64, 64), (view.Width, view.Height));
        Assert.Equal(view.Pixels, augmentation.Apply(photo, Small, new Random(4)).Pixels);
        Assert.NotEqual(view.Pixels, augmentation.Apply(photo, Small, new Random(5)).Pixels);
    }

    private static RgbImage Photo() => ImageLoader.Fit(ImageLoader.Decode(TuxPaintStamps.Images("animals", 1)[0]), Small);
}
