using FineTune.Core.Data;
using FineTune.Core.Models;
using SkiaSharp;

namespace FineTune.Core.Tests.Data;

public sealed class ImageLoaderTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("images-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData(SKEncodedImageFormat.Png)]
    [InlineData(SKEncodedImageFormat.Jpeg)]
    [InlineData(SKEncodedImageFormat.Webp)]
    public void EncodedFormatsDecode(SKEncodedImageFormat format)
    {
        var path = Write($"image.{format}", Encode(TwoColour(40, 20), format));
        var image = ImageLoader.Decode(path);
        Assert.Equal((40, 20), (image.Width, image.Height));
        AssertClose(SKColors.Red, Pixel(image, 5, 10));
        AssertClose(SKColors.Blue, Pixel(image, 35, 10));
    }

    [Fact]
    public void BmpDecodes()
    {
        // 2×1, 24-bit, bottom-up: a red then a blue pixel, rows padded to 4 bytes.
        byte[] pixels = [0, 0, 255, 255, 0, 0, 0, 0];
        var header = new List<byte>();
        header.AddRange("BM"u8.ToArray());
        header.AddRange(BitConverter.GetBytes(54 + pixels.Length));
        header.AddRange(new byte[4]);
        header.AddRange(BitConverter.GetBytes(54));
        header.AddRange(BitConverter.GetBytes(40));
        header.AddRange(BitConverter.GetBytes(2));
        header.AddRange(BitConverter.GetBytes(1));
        header.AddRange(BitConverter.GetBytes((short)1));
        header.AddRange(BitConverter.GetBytes((short)24));
        header.AddRange(new byte[24]);
        var image = ImageLoader.Decode(Write("image.bmp", [.. header, .. pixels]));
        Assert.Equal(SKColors.Red, Pixel(image, 0, 0));
        Assert.Equal(SKColors.Blue, Pixel(image, 1, 0));
    }

    [Fact]
    public void AnimatedGifGivesItsFirstFrame()
    {
        // 1×1, palette [red, black]; frame one is red, frame two black.
        byte[] gif =
        [
            .. "GIF89a"u8.ToArray(), 1, 0, 1, 0, 0x80, 0, 0, 255, 0, 0, 0, 0, 0,
            0x21, 0xF9, 4, 0, 10, 0, 0, 0, 0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 2, 0x44, 0x01, 0,
            0x21, 0xF9, 4, 0, 10, 0, 0, 0, 0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 2, 0x4C, 0x01, 0,
            0x3B,
        ];
        var image = ImageLoader.Decode(Write("anim.gif", gif));
        Assert.Equal(SKColors.Red, Pixel(image, 0, 0));
    }

    [Fact]
    public void ExifOrientationIsHonoured()
    {
        // Stored 40×20, red left and blue right, tagged "rotate 90° clockwise to display" (orientation 6).
        var jpeg = Encode(TwoColour(40, 20), SKEncodedImageFormat.Jpeg);
        byte[] exif =
        [
            0xFF, 0xE1, 0, 34, .. "Exif\0\0"u8.ToArray(),
            (byte)'I', (byte)'I', 0x2A, 0, 8, 0, 0, 0,
            1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0,
            0, 0, 0, 0,
        ];
        var image = ImageLoader.Decode(Write("rotated.jpg", [jpeg[0], jpeg[1], .. exif, .. jpeg[2..]]));
        Assert.Equal((20, 40), (image.Width, image.Height));
        AssertClose(SKColors.Red, Pixel(image, 10, 5));
        AssertClose(SKColors.Blue, Pixel(image, 10, 35));
    }

    [Fact]
    public void TransparencyIsCompositedOntoWhite()
    {
        using var bitmap = new SKBitmap(new SKImageInfo(4, 4, SKColorType.Rgba8888, SKAlphaType.Unpremul));
        bitmap.Erase(new SKColor(0, 0, 0, 0));
        bitmap.SetPixel(0, 0, SKColors.Green);
        var image = ImageLoader.Decode(Write("cutout.png", Encode(bitmap, SKEncodedImageFormat.Png)));
        Assert.Equal(SKColors.White, Pixel(image, 3, 3));
        Assert.Equal(SKColors.Green, Pixel(image, 0, 0));
    }

    [Fact]
    public void PaddingKeepsAThinObjectWhole()
    {
        var thin = RgbImage.Filled(10, 100, (0, 0, 0));
        var padded = Preprocessing.ImageNet() with { Resize = ResizeMode.Pad, CropSize = 50 };
        var cropped = Preprocessing.ImageNet() with { ResizeSize = 56, CropSize = 50 };

        var a = ImageLoader.Fit(thin, padded);
        var b = ImageLoader.Fit(thin, cropped);

        Assert.Equal(SKColors.Black, Pixel(a, 25, 0));
        Assert.Equal(SKColors.White, Pixel(a, 0, 25));
        Assert.Equal(SKColors.Black, Pixel(b, 0, 25));
    }

    [Fact]
    public void TensorFollowsChannelOrderScaleMeanAndStd()
    {
        var pixel = new RgbImage(1, 1, [255, 128, 0]);
        var bgr = new Preprocessing(1, 1, ChannelOrder.Bgr, 1f, [10f, 20f, 30f], [1f, 2f, 5f]);
        var values = new float[3];

        ImageLoader.Fill(pixel, bgr, values);

        Assert.Equal([0 - 10f, (128 - 20f) / 2, (255 - 30f) / 5], values);
    }

    [Fact]
    public void OversizedImageIsRefusedFromItsHeader()
    {
        var path = Write("big.png", Encode(TwoColour(40, 40), SKEncodedImageFormat.Png));
        var error = Assert.Throws<InvalidImageException>(() => ImageLoader.Decode(path, maxPixels: 1000));
        Assert.Contains("40×40 is over the 1000-pixel limit", error.Message);
    }

    [Fact]
    public void ABatchWithAFileGoneBadFailsWithThatFilesError()
    {
        var good = Write("good.png", Encode(TwoColour(40, 20), SKEncodedImageFormat.Png));
        var bad = Write("bad.png", Encode(TwoColour(40, 20), SKEncodedImageFormat.Png)[..30]);
        var source = new FileImageSource([new ImageSample(good, 0), new ImageSample(bad, 1)], Preprocessing.ImageNet() with { ResizeSize = 32, CropSize = 16 });
        var error = Assert.Throws<InvalidImageException>(() => source.Range(0, 2));
        Assert.Equal(bad, error.Path);
    }

    /// <summary>A batch made ahead (the trainer's prefetch) is the batch made when asked, and a file gone bad fails it as itself when it is taken.</summary>
    [Fact]
    public void APrefetchedBatchIsTheBatchAndFailsAsItselfWhenTaken()
    {
        var first = Write("first.png", Encode(TwoColour(40, 20), SKEncodedImageFormat.Png));
        var second = Write("second.png", Encode(TwoColour(20, 40), SKEncodedImageFormat.Png));
        var bad = Write("bad.png", Encode(TwoColour(40, 20), SKEncodedImageFormat.Png)[..30]);
        var source = new FileImageSource([new ImageSample(first, 0), new ImageSample(second, 1), new ImageSample(bad, 1)],
            Preprocessing.ImageNet() with { ResizeSize = 32, CropSize = 16 }, new Augmentation());
        using var scope = TorchSharp.torch.NewDisposeScope();

        var ahead = source.Prefetch([1, 0], i => i + 7);
        var failing = source.Prefetch([2], i => i);

        Assert.True(source.Batch([1, 0], i => i + 7).eq(ahead()).all().item<bool>());
        Assert.Equal(bad, Assert.Throws<InvalidImageException>(() => failing()).Path);
    }

    private string Write(string name, byte[] bytes)
    {
        var path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    internal static SKBitmap TwoColour(int width, int height)
    {
        var bitmap = new SKBitmap(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Opaque));
        using var canvas = new SKCanvas(bitmap);
        canvas.Clear(SKColors.Blue);
        using var red = new SKPaint { Color = SKColors.Red };
        canvas.DrawRect(0, 0, width / 2f, height, red);
        return bitmap;
    }

    internal static byte[] Encode(SKBitmap bitmap, SKEncodedImageFormat format)
    {
        using var data = bitmap.Encode(format, 95) ?? throw new InvalidOperationException($"cannot encode {format}");
        return data.ToArray();
    }

    private static SKColor Pixel(RgbImage image, int x, int y)
    {
        int i = 3 * (y * image.Width + x);
        return new SKColor(image.Pixels[i], image.Pixels[i + 1], image.Pixels[i + 2]);
    }

    private static void AssertClose(SKColor expected, SKColor actual)
    {
        Assert.True(Math.Abs(expected.Red - actual.Red) < 40 && Math.Abs(expected.Green - actual.Green) < 40 && Math.Abs(expected.Blue - actual.Blue) < 40,
            $"expected about {expected}, got {actual}");
    }
}
