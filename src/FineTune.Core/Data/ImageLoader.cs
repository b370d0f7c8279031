using FineTune.Core.Models;
using SkiaSharp;
using static TorchSharp.torch;

namespace FineTune.Core.Data;

/// <summary>Turns an image file into the input tensor a model family expects.</summary>
public static class ImageLoader
{
    /// <summary>Transparent pixels are composited onto white, so cut-outs look the same whatever their hidden colour.</summary>
    public static readonly SKColor Background = SKColors.White;

    private static readonly SKSamplingOptions Sampling = new(SKFilterMode.Linear, SKMipmapMode.Linear);

    /// <summary>Largest image decoded unless the caller says otherwise (decompression bombs).</summary>
    public const long DefaultMaxPixels = 50_000_000;

    /// <summary>Decodes, orients, flattens and fits the image to the model's square, then normalises it: [3, crop, crop].</summary>
    public static Tensor Load(string path, Preprocessing preprocessing)
    {
        using var bitmap = Decode(path);
        using var fitted = Fit(bitmap, preprocessing);
        return ToTensor(fitted, preprocessing);
    }

    /// <summary>The CropSize × CropSize input per <see cref="Preprocessing.Resize"/>.</summary>
    public static SKBitmap Fit(SKBitmap image, Preprocessing preprocessing)
    {
        if (preprocessing.Resize == ResizeMode.Pad) return PadToSquare(image, preprocessing.CropSize);
        using var resized = ResizeShortSide(image, preprocessing.ResizeSize);
        return CenterCrop(resized, preprocessing.CropSize);
    }

    /// <summary>The whole image, scaled so its long side is <paramref name="size"/>, centred on <see cref="Background"/>.</summary>
    public static SKBitmap PadToSquare(SKBitmap image, int size)
    {
        double scale = (double)size / Math.Max(image.Width, image.Height);
        float width = (float)(image.Width * scale), height = (float)(image.Height * scale);
        var result = new SKBitmap(new SKImageInfo(size, size, SKColorType.Rgba8888, SKAlphaType.Opaque));
        using var canvas = new SKCanvas(result);
        canvas.Clear(Background);
        using var source = SKImage.FromBitmap(image);
        canvas.DrawImage(source, SKRect.Create((size - width) / 2, (size - height) / 2, width, height), Sampling);
        return result;
    }

    /// <summary>
    /// Decoded as opaque RGBA, upright per its EXIF orientation; an animated image gives its first frame.
    /// Throws <see cref="InvalidImageException"/> for anything that is not a whole image of at most
    /// <paramref name="maxPixels"/> pixels, which is checked from the header before any pixel is decoded.
    /// </summary>
    public static SKBitmap Decode(string path, long maxPixels = DefaultMaxPixels)
    {
        using var stream = File.OpenRead(path);
        using var codec = SKCodec.Create(stream, out var result)
            ?? throw new InvalidImageException(path, result switch
            {
                SKCodecResult.Unimplemented => "not an image",
                SKCodecResult.IncompleteInput => "the image is truncated",
                _ => $"not a decodable image ({result})",
            });
        long pixels = (long)codec.Info.Width * codec.Info.Height;
        if (pixels > maxPixels)
            throw new InvalidImageException(path, $"{codec.Info.Width}×{codec.Info.Height} is over the {maxPixels}-pixel limit");
        if (pixels == 0)
            throw new InvalidImageException(path, "the image is empty");
        var info = new SKImageInfo(codec.Info.Width, codec.Info.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        using var decoded = new SKBitmap(info);
        var status = codec.GetPixels(info, decoded.GetPixels());
        if (status != SKCodecResult.Success)
            throw new InvalidImageException(path, status == SKCodecResult.IncompleteInput ? "the image is truncated" : $"decoding failed ({status})");
        return Flatten(decoded, codec.EncodedOrigin);
    }

    private static SKBitmap Flatten(SKBitmap source, SKEncodedOrigin origin)
    {
        bool swapsAxes = origin is SKEncodedOrigin.LeftTop or SKEncodedOrigin.RightTop or SKEncodedOrigin.RightBottom or SKEncodedOrigin.LeftBottom;
        int width = swapsAxes ? source.Height : source.Width;
        int height = swapsAxes ? source.Width : source.Height;
        var result = new SKBitmap(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Opaque));
        using var canvas = new SKCanvas(result);
        canvas.Clear(Background);
        canvas.SetMatrix(OrientationMatrix(origin, source.Width, source.Height));
        canvas.DrawBitmap(source, 0, 0);
        return result;
    }

    /// <summary>Maps the stored pixels onto the upright picture (EXIF orientations 1–8).</summary>
    private static SKMatrix OrientationMatrix(SKEncodedOrigin origin, int w, int h) => origin switch
    {
        SKEncodedOrigin.TopRight => new SKMatrix(-1, 0, w, 0, 1, 0, 0, 0, 1),
        SKEncodedOrigin.BottomRight => new SKMatrix(-1, 0, w, 0, -1, h, 0, 0, 1),
        SKEncodedOrigin.BottomLeft => new SKMatrix(1, 0, 0, 0, -1, h, 0, 0, 1),
        SKEncodedOrigin.LeftTop => new SKMatrix(0, 1, 0, 1, 0, 0, 0, 0, 1),
        SKEncodedOrigin.RightTop => new SKMatrix(0, -1, h, 1, 0, 0, 0, 0, 1),
        SKEncodedOrigin.RightBottom => new SKMatrix(0, -1, h, -1, 0, w, 0, 0, 1),
        SKEncodedOrigin.LeftBottom => new SKMatrix(0, 1, 0, -1, 0, w, 0, 0, 1),
        _ => SKMatrix.Identity,
    };

    public static SKBitmap ResizeShortSide(SKBitmap source, int shortSide)
    {
        double scale = (double)shortSide / Math.Min(source.Width, source.Height);
        int width = Math.Max(1, (int)Math.Round(source.Width * scale));
        int height = Math.Max(1, (int)Math.Round(source.Height * scale));
        return source.Resize(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Opaque), Sampling)
            ?? throw new InvalidOperationException("resize failed");
    }

    public static SKBitmap CenterCrop(SKBitmap source, int size)
    {
        var result = new SKBitmap(new SKImageInfo(size, size, SKColorType.Rgba8888, SKAlphaType.Opaque));
        int left = (source.Width - size) / 2, top = (source.Height - size) / 2;
        if (!source.ExtractSubset(result, SKRectI.Create(left, top, size, size)))
        {
            result.Dispose();
            throw new ArgumentException($"a {source.Width}×{source.Height} image cannot be cropped to {size}×{size}");
        }
        return result;
    }

    public static Tensor ToTensor(SKBitmap rgba, Preprocessing preprocessing)
    {
        int w = rgba.Width, h = rgba.Height, plane = w * h;
        var pixels = rgba.GetPixelSpan();
        var chw = new float[3 * plane];
        var meanImage = preprocessing.MeanImage?.Value;
        if (meanImage is not null && meanImage.Length != chw.Length)
            throw new ArgumentException($"the mean image is for {meanImage.Length / 3} pixels, the crop has {plane}");
        for (int c = 0; c < 3; c++)
        {
            int source = preprocessing.ChannelOrder == ChannelOrder.Rgb ? c : 2 - c;
            float mean = preprocessing.Mean[c], std = preprocessing.Std[c];
            for (int i = 0; i < plane; i++)
            {
                float value = pixels[i * 4 + source] * preprocessing.Scale;
                if (meanImage is not null) value -= meanImage[c * plane + i];
                chw[c * plane + i] = (value - mean) / std;
            }
        }
        return tensor(chw, [3, h, w]);
    }
}

/// <summary>A file that is not a usable image.</summary>
public sealed class InvalidImageException(string path, string reason) : Exception($"{path}: {reason}")
{
    public string Path { get; } = path;
    public string Reason { get; } = reason;
}
