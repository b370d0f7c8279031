using FineTune.Core.Data;
using SkiaSharp;

namespace FineTune.Core.Evaluation;

/// <summary>A small PNG of an image, whole and square (padded on the background): what the dashboard shows of a misclassified image.</summary>
public static class Thumbnail
{
    public const int Size = 128;

    public static byte[] Png(string path, int size = Size)
    {
        var square = ImageLoader.PadToSquare(ImageLoader.Decode(path), size);
        var info = new SKImageInfo(size, size, SKColorType.Rgba8888, SKAlphaType.Opaque);
        var rgb = square.Pixels;
        var rgba = new byte[4 * size * size];
        for (int i = 0, o = 0; i < rgb.Length; i += 3, o += 4)
        {
            rgba[o] = rgb[i];
            rgba[o + 1] = rgb[i + 1];
            rgba[o + 2] = rgb[i + 2];
            rgba[o + 3] = 255;
        }
        using var image = SKImage.FromPixelCopy(info, rgba);
        using var data = image.Encode(SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }
}
