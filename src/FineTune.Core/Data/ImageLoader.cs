using System.Runtime.CompilerServices;
using FineTune.Core.Models;
using SkiaSharp;
using static TorchSharp.torch;

namespace FineTune.Core.Data;

/// <summary>
/// Turns an image file into the input tensor a model family expects, as torchvision does for a PyTorch user:
/// decode, upright per EXIF, transparency onto white, <c>Resize(256)</c> with Pillow's bilinear filter,
/// <c>CenterCrop(224)</c>, <c>ToTensor</c>, <c>Normalize</c>. SkiaSharp only decodes; every geometric step is
/// ours, on <see cref="RgbImage"/>, and matches torchvision 0.14 + Pillow (tested against them on files of
/// every kind).
/// </summary>
public static class ImageLoader
{
    /// <summary>Transparent pixels are composited onto white, so cut-outs look the same whatever their hidden colour.</summary>
    public static readonly (byte R, byte G, byte B) Background = (255, 255, 255);

    /// <summary>Largest image decoded unless the caller says otherwise (decompression bombs).</summary>
    public const long DefaultMaxPixels = 50_000_000;

    /// <summary>
    /// Largest long side / short side decoded unless the caller says otherwise: with it, torchvision's
    /// <c>Resize(256)</c> of the short side makes at most 256 × 25,600 pixels (20 MB of RGB) from any image.
    /// </summary>
    public const double DefaultMaxAspectRatio = 100;

    /// <summary>The extensions of the formats <see cref="Decode"/> reads (SkiaSharp's codecs), lower case.</summary>
    public static readonly IReadOnlySet<string> Extensions = new HashSet<string>([".bmp", ".gif", ".ico", ".jpeg", ".jpg", ".png", ".wbmp", ".webp"]);

    /// <summary>
    /// The image files under <paramref name="folder"/> (by <see cref="Extensions"/>, any case), its subfolders too, each
    /// folder's in ordinal order, found as they are enumerated; hidden files and folders (a leading '.') are left out.
    /// </summary>
    public static IEnumerable<string> FilesUnder(string folder)
    {
        foreach (var file in Directory.EnumerateFiles(folder).Order(StringComparer.Ordinal))
        {
            if (!Path.GetFileName(file).StartsWith('.') && Extensions.Contains(Path.GetExtension(file).ToLowerInvariant())) yield return file;
        }
        foreach (var child in Directory.EnumerateDirectories(folder).Order(StringComparer.Ordinal))
        {
            if (Path.GetFileName(child).StartsWith('.')) continue;
            foreach (var file in FilesUnder(child)) yield return file;
        }
    }

    /// <summary>Decodes, orients, flattens and fits the image to the model's square, then normalises it: [3, crop, crop].</summary>
    public static Tensor Load(string path, Preprocessing preprocessing)
    {
        var input = new float[InputLength(preprocessing)];
        Fill(Fit(Decode(path), preprocessing), preprocessing, input);
        return tensor(input, [3, preprocessing.CropSize, preprocessing.CropSize]);
    }

    /// <summary>Floats in one CHW model input.</summary>
    public static int InputLength(Preprocessing preprocessing) => 3 * preprocessing.CropSize * preprocessing.CropSize;

    /// <summary>The CropSize × CropSize input per <see cref="Preprocessing.Resize"/>.</summary>
    public static RgbImage Fit(RgbImage image, Preprocessing preprocessing) => preprocessing.Resize == ResizeMode.Pad
        ? PadToSquare(image, preprocessing.CropSize, preprocessing.Interpolation)
        : CenterCrop(ResizeShortSide(image, preprocessing.ResizeSize, preprocessing.Interpolation), preprocessing.CropSize);

    /// <summary>Pillow's <c>image.resize((width, height), filter)</c> with the weights' filter.</summary>
    public static RgbImage Resample(RgbImage image, int width, int height, Interpolation interpolation) =>
        PilResize.Resize(image, width, height, interpolation);

    /// <summary>
    /// The whole image on a <paramref name="size"/> square of <see cref="Background"/>: its long side resized to
    /// <paramref name="size"/>, its short side to ⌊short · size / long⌋ (at least 1), pasted at
    /// (⌊(size − w) / 2⌋, ⌊(size − h) / 2⌋). In Pillow: <c>Image.new("RGB", (size, size), "white").paste(img.resize((w, h), BILINEAR), box)</c>.
    /// </summary>
    public static RgbImage PadToSquare(RgbImage image, int size, Interpolation interpolation = Interpolation.Bilinear)
    {
        int longSide = Math.Max(image.Width, image.Height), shortSide = Math.Min(image.Width, image.Height);
        int fitted = (int)Math.Max(1, (long)shortSide * size / longSide);
        var (width, height) = image.Width >= image.Height ? (size, fitted) : (fitted, size);
        var result = RgbImage.Filled(size, size, Background);
        result.Paste(Resample(image, width, height, interpolation), (size - width) / 2, (size - height) / 2);
        return result;
    }

    /// <summary>torchvision 0.14's <c>Resize(shortSide)</c>: the short side becomes <paramref name="shortSide"/>, the long side ⌊shortSide · long / short⌋.</summary>
    public static RgbImage ResizeShortSide(RgbImage source, int shortSide, Interpolation interpolation = Interpolation.Bilinear)
    {
        bool portrait = source.Width <= source.Height;
        int shortIn = portrait ? source.Width : source.Height, longIn = portrait ? source.Height : source.Width;
        int longOut = (int)((double)((long)shortSide * longIn) / shortIn);
        var (width, height) = portrait ? (shortSide, longOut) : (longOut, shortSide);
        return Resample(source, width, height, interpolation);
    }

    /// <summary>torchvision 0.14's <c>CenterCrop(size)</c> (offsets rounded half to even, as Python's round).</summary>
    public static RgbImage CenterCrop(RgbImage source, int size)
    {
        if (source.Width < size || source.Height < size)
            throw new ArgumentException($"a {source.Width}×{source.Height} image cannot be cropped to {size}×{size}");
        int left = (int)Math.Round((source.Width - size) / 2.0, MidpointRounding.ToEven);
        int top = (int)Math.Round((source.Height - size) / 2.0, MidpointRounding.ToEven);
        return source.Crop(left, top, size, size);
    }

    /// <summary>
    /// Decoded upright per its EXIF orientation, transparency composited onto <see cref="Background"/>; an
    /// animated image gives its first frame. Throws <see cref="InvalidImageException"/> for anything that is not
    /// a whole image of at most <paramref name="maxPixels"/> pixels and <paramref name="maxAspectRatio"/>, which are
    /// checked from the header before any pixel is decoded.
    /// </summary>
    public static RgbImage Decode(string path, long maxPixels = DefaultMaxPixels, double maxAspectRatio = DefaultMaxAspectRatio)
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
        int longSide = Math.Max(codec.Info.Width, codec.Info.Height), shortSide = Math.Min(codec.Info.Width, codec.Info.Height);
        if (longSide > maxAspectRatio * shortSide)
            throw new InvalidImageException(path, $"{codec.Info.Width}×{codec.Info.Height} is over the {maxAspectRatio}:1 aspect-ratio limit (resizing it would take too much memory)");
        var info = new SKImageInfo(codec.Info.Width, codec.Info.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        using var decoded = new SKBitmap(info);
        var status = codec.GetPixels(info, decoded.GetPixels());
        if (status != SKCodecResult.Success)
            throw new InvalidImageException(path, status == SKCodecResult.IncompleteInput ? "the image is truncated" : $"decoding failed ({status})");
        return Upright(decoded, codec.EncodedOrigin);
    }

    /// <summary>
    /// RGBA (unpremultiplied, rows of <c>RowBytes</c>) to upright, opaque RGB. Alpha blends onto the background as
    /// <c>(c·a + bg·(255 − a) + 127) / 255</c> in integers.
    /// </summary>
    private static RgbImage Upright(SKBitmap rgba, SKEncodedOrigin origin)
    {
        int w = rgba.Width, h = rgba.Height, stride = rgba.RowBytes;
        bool swapsAxes = origin is SKEncodedOrigin.LeftTop or SKEncodedOrigin.RightTop or SKEncodedOrigin.RightBottom or SKEncodedOrigin.LeftBottom;
        var result = new RgbImage(swapsAxes ? h : w, swapsAxes ? w : h);
        ReadOnlySpan<byte> source = rgba.GetPixelSpan();
        Span<byte> output = result.Pixels;
        if (origin == SKEncodedOrigin.TopLeft)
        {
            // Most files, row by row without mapping each pixel: for a 7-megapixel photo that mapping cost almost what decoding did.
            for (int y = 0; y < h; y++)
            {
                var row = source.Slice(y * stride, 4 * w);
                var target = output.Slice(3 * y * w, 3 * w);
                for (int x = 0; x < w; x++) Put(row, 4 * x, target, 3 * x);
            }
            return result;
        }
        for (int y = 0; y < result.Height; y++)
        {
            for (int x = 0; x < result.Width; x++)
            {
                var (sx, sy) = SourceOf(origin, x, y, w, h);
                Put(source, sy * stride + 4 * sx, output, 3 * (y * result.Width + x));
            }
        }
        return result;
    }

    /// <summary>The RGBA pixel at <paramref name="s"/> as opaque RGB at <paramref name="o"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Put(ReadOnlySpan<byte> source, int s, Span<byte> output, int o)
    {
        int alpha = source[s + 3];
        if (alpha == 255)
        {
            output[o] = source[s];
            output[o + 1] = source[s + 1];
            output[o + 2] = source[s + 2];
        }
        else
        {
            output[o] = Blend(source[s], Background.R, alpha);
            output[o + 1] = Blend(source[s + 1], Background.G, alpha);
            output[o + 2] = Blend(source[s + 2], Background.B, alpha);
        }
    }

    private static byte Blend(int colour, int background, int alpha) => (byte)((colour * alpha + background * (255 - alpha) + 127) / 255);

    /// <summary>The stored pixel shown at (x, y) of the upright picture, for EXIF orientations 1–8 of a stored w × h image.</summary>
    private static (int X, int Y) SourceOf(SKEncodedOrigin origin, int x, int y, int w, int h) => origin switch
    {
        SKEncodedOrigin.TopRight => (w - 1 - x, y),
        SKEncodedOrigin.BottomRight => (w - 1 - x, h - 1 - y),
        SKEncodedOrigin.BottomLeft => (x, h - 1 - y),
        SKEncodedOrigin.LeftTop => (y, x),
        SKEncodedOrigin.RightTop => (y, h - 1 - x),
        SKEncodedOrigin.RightBottom => (w - 1 - y, h - 1 - x),
        SKEncodedOrigin.LeftBottom => (w - 1 - y, x),
        _ => (x, y),
    };

    /// <summary>
    /// Writes the model input of a CropSize square image into <paramref name="chw"/>: scale, channel order, mean
    /// image, then per-channel mean and std.
    /// </summary>
    public static void Fill(RgbImage image, Preprocessing preprocessing, Span<float> chw)
    {
        int plane = image.Width * image.Height;
        if (chw.Length != 3 * plane)
            throw new ArgumentException($"the input holds {chw.Length / 3} pixels, the image has {plane}");
        var meanImage = preprocessing.MeanImage?.Value;
        if (meanImage is not null && meanImage.Length != chw.Length)
            throw new ArgumentException($"the mean image is for {meanImage.Length / 3} pixels, the crop has {plane}");
        var pixels = image.Pixels;
        for (int c = 0; c < 3; c++)
        {
            int source = preprocessing.ChannelOrder == ChannelOrder.Rgb ? c : 2 - c;
            float mean = preprocessing.Mean[c], std = preprocessing.Std[c], scale = preprocessing.Scale;
            var output = chw.Slice(c * plane, plane);
            for (int i = 0; i < plane; i++)
            {
                float value = pixels[3 * i + source] * scale;
                if (meanImage is not null) value -= meanImage[c * plane + i];
                output[i] = (value - mean) / std;
            }
        }
    }
}

/// <summary>A file that is not a usable image.</summary>
public sealed class InvalidImageException(string path, string reason) : BadInputException($"{path}: {reason}")
{
    public string Path { get; } = path;
    public string Reason { get; } = reason;
}

