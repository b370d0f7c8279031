using System.Text.Json.Serialization;
using FineTune.Core.Models;

namespace FineTune.Core.Data;

/// <summary>What random erasing fills its rectangle with, by timm's <c>--remode</c> names.</summary>
[JsonConverter(typeof(ErasingModeJson))]
public enum ErasingMode
{
    /// <summary>A standard normal per pixel and channel (in normalised units).</summary>
    Pixel,
    /// <summary>A standard normal per channel.</summary>
    Rand,
    /// <summary>Zero, the mean colour.</summary>
    Const,
}

public static class ErasingModes
{
    public static readonly ChoiceTable<ErasingMode, Choice<ErasingMode>> Choices = new(
        new(ErasingMode.Pixel, "pixel", "a standard normal per pixel and channel"),
        new(ErasingMode.Rand, "rand", "a standard normal per channel"),
        new(ErasingMode.Const, "const", "zero, the mean colour"));
}

public sealed class ErasingModeJson() : ChoiceJsonConverter<ErasingMode, Choice<ErasingMode>>(ErasingModes.Choices);

/// <summary>
/// Train-time augmentation, timm's training transforms (<c>create_transform(is_training=True)</c>) with their
/// defaults: RandomResizedCrop (area share <paramref name="MinScale"/>–<paramref name="MaxScale"/>, aspect
/// <paramref name="MinRatio"/>–<paramref name="MaxRatio"/>, the crop resized with the weights' Pillow filter), a
/// horizontal flip with probability <paramref name="FlipProbability"/>, then either an <paramref name="AutoAugment"/>
/// policy or, as timm, only without one, torchvision's ColorJitter (brightness, contrast and saturation factors
/// from [1 − j, 1 + j], in random order), all on 8-bit pixels as torchvision's functional ops on PIL images; after
/// normalisation, random erasing with probability <paramref name="EraseProbability"/> (timm's RandomErasing:
/// 2–33% of the area, aspect 0.3–3.3). Mixup (Beta(<paramref name="MixupAlpha"/>)) and CutMix
/// (Beta(<paramref name="CutmixAlpha"/>)) mix whole batches (<see cref="Training.Mixup"/>). Every draw comes from
/// the seed it is given, so an epoch replays identically.
/// </summary>
public sealed record Augmentation(
    bool RandomResizedCrop = true,
    double FlipProbability = 0.5,
    float ColorJitter = 0.4f,
    AutoAugment? AutoAugment = null,
    double EraseProbability = 0,
    ErasingMode EraseMode = ErasingMode.Pixel,
    double MixupAlpha = 0,
    double CutmixAlpha = 0,
    double MixupProbability = 1,
    double MixupSwitchProbability = 0.5,
    double MinScale = 0.08,
    double MaxScale = 1,
    double MinRatio = 3.0 / 4,
    double MaxRatio = 4.0 / 3)
{
    /// <summary>Whether batches are mixed (<see cref="Training.Mixup"/>).</summary>
    public bool Mixes => MixupAlpha > 0 || CutmixAlpha > 0;

    /// <summary>A CropSize × CropSize augmented view of <paramref name="image"/>.</summary>
    public RgbImage Apply(RgbImage image, Preprocessing preprocessing, Random random)
    {
        int size = preprocessing.CropSize;
        RgbImage view;
        if (RandomResizedCrop)
        {
            // With Pad, crops of the padded square, so a crop never starts from a cut-off object.
            var canvas = preprocessing.Resize == ResizeMode.Pad ? ImageLoader.PadToSquare(image, size, preprocessing.Interpolation) : image;
            var (left, top, width, height) = CropRectangle(canvas.Width, canvas.Height, random);
            view = ImageOps.ResizedCrop(canvas, top, left, height, width, size, size, preprocessing.Interpolation);
        }
        else
        {
            view = ImageLoader.Fit(image, preprocessing);
        }
        if (FlipProbability > 0 && random.NextDouble() < FlipProbability) view.MirrorInPlace();
        if (AutoAugment is not null) view = AutoAugment.Apply(view, random);
        else if (ColorJitter > 0) view = Jitter(view, random);
        return view;
    }

    /// <summary>
    /// timm's <c>RandomErasing</c> on one normalised CHW input (<paramref name="size"/> square): with probability
    /// <see cref="EraseProbability"/>, up to 10 tries for a rectangle of 2–33% of the area and aspect 0.3–3.3 that fits.
    /// </summary>
    public void Erase(Span<float> chw, int size, Random random)
    {
        if (EraseProbability <= 0 || random.NextDouble() >= EraseProbability) return;
        const double minArea = 0.02, maxArea = 1 / 3.0;
        double logLow = Math.Log(0.3), logHigh = Math.Log(1 / 0.3);
        int plane = size * size;
        for (int attempt = 0; attempt < 10; attempt++)
        {
            double target = (minArea + random.NextDouble() * (maxArea - minArea)) * plane;
            double aspect = Math.Exp(logLow + random.NextDouble() * (logHigh - logLow));
            int h = (int)Math.Round(Math.Sqrt(target * aspect)), w = (int)Math.Round(Math.Sqrt(target / aspect));
            if (w >= size || h >= size) continue;
            int top = random.Next(size - h + 1), left = random.Next(size - w + 1);
            for (int c = 0; c < 3; c++)
            {
                double channel = EraseMode == ErasingMode.Rand ? Gaussian.Next(random) : 0;
                for (int y = top; y < top + h; y++)
                {
                    var row = chw.Slice(c * plane + y * size + left, w);
                    for (int x = 0; x < w; x++) row[x] = (float)(EraseMode == ErasingMode.Pixel ? Gaussian.Next(random) : channel);
                }
            }
            return;
        }
    }

    /// <summary>torchvision's <c>RandomResizedCrop.get_params</c>, drawn from <paramref name="random"/>: (left, top, width, height).</summary>
    public (int Left, int Top, int Width, int Height) CropRectangle(int width, int height, Random random)
    {
        double area = (double)width * height;
        double logLow = Math.Log(MinRatio), logHigh = Math.Log(MaxRatio);
        for (int attempt = 0; attempt < 10; attempt++)
        {
            double target = area * (MinScale + random.NextDouble() * (MaxScale - MinScale));
            double aspect = Math.Exp(logLow + random.NextDouble() * (logHigh - logLow));
            int w = (int)Math.Round(Math.Sqrt(target * aspect));
            int h = (int)Math.Round(Math.Sqrt(target / aspect));
            if (w > 0 && h > 0 && w <= width && h <= height)
                return (random.Next(width - w + 1), random.Next(height - h + 1), w, h);
        }
        // Fallback: the largest centred crop within the aspect range.
        double ratio = (double)width / height;
        int cw = width, ch = height;
        if (ratio < MinRatio) ch = (int)Math.Round(width / MinRatio);
        else if (ratio > MaxRatio) cw = (int)Math.Round(height * MaxRatio);
        return ((width - cw) / 2, (height - ch) / 2, cw, ch);
    }

    /// <summary>torchvision's <c>ColorJitter(j, j, j)</c>: the three adjustments in a random order, each factor from [max(0, 1 − j), 1 + j].</summary>
    private RgbImage Jitter(RgbImage image, Random random)
    {
        int[] order = [0, 1, 2];
        random.Shuffle(order);
        double Factor() => Math.Max(0, 1 - ColorJitter) + random.NextDouble() * (1 + ColorJitter - Math.Max(0, 1 - ColorJitter));
        double brightness = Factor(), contrast = Factor(), saturation = Factor();
        foreach (int adjustment in order)
        {
            image = adjustment switch
            {
                0 => ImageOps.Brightness(image, brightness),
                1 => ImageOps.Contrast(image, contrast),
                _ => ImageOps.Color(image, saturation),
            };
        }
        return image;
    }
}
