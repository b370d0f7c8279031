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

    /// <summary>Decodes, orients, flattens, resizes and center-crops the image, then normalises it: [3, crop, crop].</summary>
    public static Tensor Load(string path, Preprocessing preprocessing)
    {
        using var bitmap = Decode(path);
        using var resized = ResizeShortSide(bitmap, preprocessing.ResizeSize);
        using var cropped = CenterCrop(resized, preprocessing.CropSize);
        return ToTensor(cropped, preprocessing);
    }

    /// <summary>Decoded as opaque RGBA, upright per its EXIF orientation. Throws <see cref="InvalidImageException"/>.</summary>
    public static SKBitmap Decode(string path)
    {
        using var stream = File.OpenRead(path);
        using var codec = SKCodec.Create(stream, out var result)
            ?? throw new InvalidImageException(path, $"not a decodable image ({result})");
        var info = new SKImageInfo(codec.Info.Width, codec.Info.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        using var decoded = new SKBitmap(info);
        var status = codec.GetPixels(info, decoded.GetPixels());
        if (status is not (SKCodecResult.Success or SKCodecResult.IncompleteInput))
            throw new InvalidImageException(path, $"decoding failed ({status})");
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
