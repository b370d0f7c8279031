using FineTune.Core.Models;
using SkiaSharp;

namespace FineTune.Core.Data;

/// <summary>
/// Train-time augmentation, torchvision's recipe: RandomResizedCrop (scale 0.08–1, aspect 3/4–4/3), horizontal
/// flip with probability ½, and optional colour jitter (brightness, contrast and saturation factors drawn
/// from [1 − j, 1 + j]). Every draw comes from the seed it is given, so an epoch replays identically.
/// </summary>
public sealed record Augmentation(
    bool RandomResizedCrop = true,
    bool HorizontalFlip = true,
    float ColorJitter = 0f,
    double MinScale = 0.08)
{
    private static readonly SKSamplingOptions Sampling = new(SKFilterMode.Linear, SKMipmapMode.Linear);

    /// <summary>A CropSize × CropSize augmented view of <paramref name="image"/>.</summary>
    public SKBitmap Apply(SKBitmap image, Preprocessing preprocessing, Random random)
    {
        int size = preprocessing.CropSize;
        SKBitmap view;
        if (RandomResizedCrop && preprocessing.Resize == ResizeMode.Pad)
        {
            // Crops of the padded square, so a crop never starts from a cut-off object.
            using var square = ImageLoader.PadToSquare(image, size);
            view = Crop(square, size, random);
        }
        else if (RandomResizedCrop)
        {
            view = Crop(image, size, random);
        }
        else
        {
            view = ImageLoader.Fit(image, preprocessing);
        }
        if (HorizontalFlip && random.NextDouble() < 0.5) Mirror(view);
        if (ColorJitter > 0) Jitter(view, random);
        return view;
    }

    private SKBitmap Crop(SKBitmap image, int size, Random random)
    {
        var view = new SKBitmap(new SKImageInfo(size, size, SKColorType.Rgba8888, SKAlphaType.Opaque));
        var crop = CropRectangle(image.Width, image.Height, random);
        using var canvas = new SKCanvas(view);
        using var source = SKImage.FromBitmap(image);
        canvas.DrawImage(source, crop, SKRect.Create(size, size), Sampling);
        return view;
    }

    private SKRect CropRectangle(int width, int height, Random random)
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
            {
                int top = random.Next(height - h + 1), left = random.Next(width - w + 1);
                return SKRect.Create(left, top, w, h);
            }
        }
        // Fallback: the largest centred crop within the aspect range.
        double ratio = (double)width / height;
        int cw = width, ch = height;
        if (ratio < 3.0 / 4) ch = (int)Math.Round(width / (3.0 / 4));
        else if (ratio > 4.0 / 3) cw = (int)Math.Round(height * (4.0 / 3));
        return SKRect.Create((width - cw) / 2, (height - ch) / 2, cw, ch);
    }

    private static void Mirror(SKBitmap bitmap)
    {
        using var pixmap = bitmap.PeekPixels();
        var pixels = pixmap.GetPixelSpan<uint>();
        for (int y = 0; y < bitmap.Height; y++) pixels.Slice(y * bitmap.Width, bitmap.Width).Reverse();
    }

    private void Jitter(SKBitmap bitmap, Random random)
    {
        float Factor() => 1 + ColorJitter * (float)(2 * random.NextDouble() - 1);
        float brightness = Factor(), contrast = Factor(), saturation = Factor();
        using var pixmap = bitmap.PeekPixels();
        var pixels = pixmap.GetPixelSpan<byte>();
        double meanGray = 0;
        for (int i = 0; i < pixels.Length; i += 4) meanGray += Gray(pixels, i);
        meanGray = meanGray * brightness / (pixels.Length / 4);
        for (int i = 0; i < pixels.Length; i += 4)
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

    private static float Gray(Span<byte> p, int i) => 0.299f * p[i] + 0.587f * p[i + 1] + 0.114f * p[i + 2];

    private static byte Clamp(float value) => (byte)Math.Clamp((int)Math.Round(value), 0, 255);
}
