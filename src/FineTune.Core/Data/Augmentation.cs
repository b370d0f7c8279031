using FineTune.Core.Models;

namespace FineTune.Core.Data;

/// <summary>
/// Train-time augmentation, torchvision's recipe: RandomResizedCrop (scale 0.08–1, aspect 3/4–4/3, the crop
/// resized with Pillow's bilinear filter), horizontal flip with probability ½, and optional colour jitter
/// (brightness, contrast and saturation factors drawn from [1 − j, 1 + j]). Every draw comes from the seed it is
/// given, so an epoch replays identically.
/// </summary>
public sealed record Augmentation(
    bool RandomResizedCrop = true,
    bool HorizontalFlip = true,
    float ColorJitter = 0f,
    double MinScale = 0.08)
{
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
            view = ImageLoader.Resample(canvas.Crop(left, top, width, height), size, size, preprocessing.Interpolation);
        }
        else
        {
            view = ImageLoader.Fit(image, preprocessing);
        }
        if (HorizontalFlip && random.NextDouble() < 0.5) view.MirrorInPlace();
        if (ColorJitter > 0) Jitter(view, random);
        return view;
    }

    /// <summary>torchvision's <c>RandomResizedCrop.get_params</c>, drawn from <paramref name="random"/>.</summary>
    private (int Left, int Top, int Width, int Height) CropRectangle(int width, int height, Random random)
    {
        double area = (double)width * height;
        double logLow = Math.Log(3.0 / 4), logHigh = Math.Log(4.0 / 3);
        for (int attempt = 0; attempt < 10; attempt++)
        {
            double target = area * (MinScale + random.NextDouble() * (1 - MinScale));
            double aspect = Math.Exp(logLow + random.NextDouble() * (logHigh - logLow));
            int w = (int)Math.Round(Math.Sqrt(target * aspect));
            int h = (int)Math.Round(Math.Sqrt(target / aspect));
            if (w > 0 && h > 0 && w <= width && h <= height)
                return (random.Next(width - w + 1), random.Next(height - h + 1), w, h);
        }
        // Fallback: the largest centred crop within the aspect range.
        double ratio = (double)width / height;
        int cw = width, ch = height;
        if (ratio < 3.0 / 4) ch = (int)Math.Round(width / (3.0 / 4));
        else if (ratio > 4.0 / 3) cw = (int)Math.Round(height * (4.0 / 3));
        return ((width - cw) / 2, (height - ch) / 2, cw, ch);
    }

    private void Jitter(RgbImage image, Random random)
    {
        float Factor() => 1 + ColorJitter * (float)(2 * random.NextDouble() - 1);
        float brightness = Factor(), contrast = Factor(), saturation = Factor();
        var pixels = image.Pixels;
        double meanGray = 0;
        for (int i = 0; i < pixels.Length; i += 3) meanGray += 0.299f * pixels[i] + 0.587f * pixels[i + 1] + 0.114f * pixels[i + 2];
        meanGray = meanGray * brightness / (pixels.Length / 3);
        for (int i = 0; i < pixels.Length; i += 3)
        {
            float r = pixels[i] * brightness, g = pixels[i + 1] * brightness, b = pixels[i + 2] * brightness;
            r = (float)((r - meanGray) * contrast + meanGray);
            g = (float)((g - meanGray) * contrast + meanGray);
            b = (float)((b - meanGray) * contrast + meanGray);
            float gray = 0.299f * r + 0.587f * g + 0.114f * b;
            pixels[i] = Clamp(gray + (r - gray) * saturation);
            pixels[i + 1] = Clamp(gray + (g - gray) * saturation);
            pixels[i + 2] = Clamp(gray + (b - gray) * saturation);
        }
    }

    private static byte Clamp(float value) => (byte)Math.Clamp((int)Math.Round(value), 0, 255);
}
