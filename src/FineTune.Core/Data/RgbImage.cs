namespace FineTune.Core.Data;

/// <summary>
/// 8-bit RGB pixels, row-major and tightly packed (a row is exactly <c>3 × Width</c> bytes). Every step from
/// decoding to the model input works on this one layout, so no stride can ever be misread.
/// </summary>
public sealed class RgbImage
{
    public RgbImage(int width, int height, byte[]? pixels = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(width);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(height);
        pixels ??= new byte[checked(3 * width * height)];
        if (pixels.Length != 3L * width * height)
            throw new ArgumentException($"{pixels.Length} bytes are not {width}×{height} RGB pixels", nameof(pixels));
        Width = width;
        Height = height;
        Pixels = pixels;
    }

    public int Width { get; }
    public int Height { get; }
    public byte[] Pixels { get; }

    public int RowBytes => 3 * Width;

    /// <summary>A filled image, e.g. the background of a padded square.</summary>
    public static RgbImage Filled(int width, int height, (byte R, byte G, byte B) colour)
    {
        var image = new RgbImage(width, height);
        var pixels = image.Pixels;
        for (int i = 0; i < pixels.Length; i += 3)
        {
            pixels[i] = colour.R;
            pixels[i + 1] = colour.G;
            pixels[i + 2] = colour.B;
        }
        return image;
    }

    /// <summary>The <paramref name="width"/> × <paramref name="height"/> rectangle at (<paramref name="left"/>, <paramref name="top"/>), which must lie inside.</summary>
    public RgbImage Crop(int left, int top, int width, int height)
    {
        if (left < 0 || top < 0 || width <= 0 || height <= 0 || left + width > Width || top + height > Height)
            throw new ArgumentException($"a {width}×{height} crop at ({left}, {top}) does not fit in {Width}×{Height}");
        var result = new RgbImage(width, height);
        for (int y = 0; y < height; y++)
            Pixels.AsSpan((top + y) * RowBytes + 3 * left, result.RowBytes).CopyTo(result.Pixels.AsSpan(y * result.RowBytes));
        return result;
    }

    /// <summary>Copies <paramref name="image"/> onto this one with its top-left corner at (<paramref name="left"/>, <paramref name="top"/>).</summary>
    public void Paste(RgbImage image, int left, int top)
    {
        if (left < 0 || top < 0 || left + image.Width > Width || top + image.Height > Height)
            throw new ArgumentException($"a {image.Width}×{image.Height} image at ({left}, {top}) does not fit in {Width}×{Height}");
        for (int y = 0; y < image.Height; y++)
            image.Pixels.AsSpan(y * image.RowBytes, image.RowBytes).CopyTo(Pixels.AsSpan((top + y) * RowBytes + 3 * left));
    }

    public void MirrorInPlace()
    {
        for (int y = 0; y < Height; y++)
        {
            var row = Pixels.AsSpan(y * RowBytes, RowBytes);
            for (int left = 0, right = Width - 1; left < right; left++, right--)
            {
                for (int c = 0; c < 3; c++)
                    (row[3 * left + c], row[3 * right + c]) = (row[3 * right + c], row[3 * left + c]);
            }
        }
    }
}
