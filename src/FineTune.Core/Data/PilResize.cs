namespace FineTune.Core.Data;

/// <summary>
/// Pillow's bilinear resampling of 8-bit RGB (<c>Image.resize(size, Image.BILINEAR)</c>, libImaging/Resample.c),
/// which torchvision 0.14's <c>Resize</c> calls on PIL images: a triangle filter widened by the scale factor when
/// shrinking (so it antialiases), fixed-point coefficients, a horizontal pass rounded to 8 bits, then a
/// vertical pass. Reproduced operation for operation so our inputs equal PyTorch users' to the byte.
/// </summary>
public static class PilResize
{
    private const int PrecisionBits = 32 - 8 - 2;
    private const int Half = 1 << (PrecisionBits - 1);

    public static RgbImage Resize(RgbImage source, int width, int height)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(width);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(height);
        if (width == source.Width && height == source.Height) return new RgbImage(width, height, (byte[])source.Pixels.Clone());

        var vertical = Coefficients(source.Height, height);
        // Only the rows the vertical pass reads are resampled horizontally.
        int firstRow = vertical.Bounds[0];
        int lastRow = vertical.Bounds[2 * height - 2] + vertical.Bounds[2 * height - 1];
        var horizontal = width == source.Width
            ? source.Crop(0, firstRow, source.Width, lastRow - firstRow)
            : Horizontal(source, firstRow, lastRow - firstRow, width);
        for (int i = 0; i < height; i++) vertical.Bounds[2 * i] -= firstRow;
        return height == source.Height ? horizontal : Vertical(horizontal, vertical, height);
    }

    private static RgbImage Horizontal(RgbImage source, int firstRow, int rows, int width)
    {
        var (bounds, kernel, size) = Coefficients(source.Width, width);
        var result = new RgbImage(width, rows);
        byte[] input = source.Pixels, output = result.Pixels;
        for (int y = 0; y < rows; y++)
        {
            int inRow = (firstRow + y) * source.RowBytes, outRow = y * result.RowBytes;
            for (int x = 0; x < width; x++)
            {
                int first = bounds[2 * x], count = bounds[2 * x + 1], k = x * size;
                int r = Half, g = Half, b = Half;
                for (int i = 0, p = inRow + 3 * first; i < count; i++, p += 3)
                {
                    int weight = kernel[k + i];
                    r += input[p] * weight;
                    g += input[p + 1] * weight;
                    b += input[p + 2] * weight;
                }
                output[outRow + 3 * x] = Clip8(r);
                output[outRow + 3 * x + 1] = Clip8(g);
                output[outRow + 3 * x + 2] = Clip8(b);
            }
        }
        return result;
    }

    private static RgbImage Vertical(RgbImage source, (int[] Bounds, int[] Kernel, int Size) coefficients, int height)
    {
        var (bounds, kernel, size) = coefficients;
        var result = new RgbImage(source.Width, height);
        int rowBytes = source.RowBytes;
        byte[] input = source.Pixels, output = result.Pixels;
        var sums = new int[rowBytes];
        for (int y = 0; y < height; y++)
        {
            int first = bounds[2 * y], count = bounds[2 * y + 1], k = y * size;
            Array.Fill(sums, Half);
            for (int i = 0; i < count; i++)
            {
                int weight = kernel[k + i], row = (first + i) * rowBytes;
                for (int j = 0; j < rowBytes; j++) sums[j] += input[row + j] * weight;
            }
            int outRow = y * rowBytes;
            for (int j = 0; j < rowBytes; j++) output[outRow + j] = Clip8(sums[j]);
        }
        return result;
    }

    /// <summary>Resample.c's precompute_coeffs + normalize_coeffs_8bpc for the bilinear filter (support 1).</summary>
    private static (int[] Bounds, int[] Kernel, int Size) Coefficients(int inSize, int outSize)
    {
        double scale = (double)inSize / outSize;
        double filterScale = Math.Max(scale, 1.0);
        double support = filterScale;
        int size = (int)Math.Ceiling(support) * 2 + 1;
        var bounds = new int[2 * outSize];
        var kernel = new int[outSize * size];
        var weights = new double[size];
        for (int xx = 0; xx < outSize; xx++)
        {
            double center = (xx + 0.5) * scale;
            double total = 0, inverse = 1.0 / filterScale;
            int min = Math.Max(0, (int)(center - support + 0.5));
            int max = Math.Min(inSize, (int)(center + support + 0.5)) - min;
            for (int x = 0; x < max; x++)
            {
                double w = Math.Abs((x + min - center + 0.5) * inverse);
                weights[x] = w < 1.0 ? 1.0 - w : 0.0;
                total += weights[x];
            }
            for (int x = 0; x < max; x++)
            {
                double w = total != 0.0 ? weights[x] / total : weights[x];
                kernel[xx * size + x] = (int)(w < 0 ? -0.5 + w * (1 << PrecisionBits) : 0.5 + w * (1 << PrecisionBits));
            }
            bounds[2 * xx] = min;
            bounds[2 * xx + 1] = max;
        }
        return (bounds, kernel, size);
    }

    private static byte Clip8(int value)
    {
        value >>= PrecisionBits;
        return value < 0 ? (byte)0 : value > 255 ? (byte)255 : (byte)value;
    }
}
