using System.Text.Json.Serialization;

namespace FineTune.Core.Data;

/// <summary>The resampling filters torchvision's weights were trained with, by torchvision's <c>InterpolationMode</c> names.</summary>
[JsonConverter(typeof(InterpolationJson))]
public enum Interpolation
{
    /// <summary>Pillow's BILINEAR: a triangle filter, support 1.</summary>
    Bilinear,
    /// <summary>Pillow's BICUBIC: Keys' cubic convolution with a = −0.5, support 2 (it overshoots, so results are clipped).</summary>
    Bicubic,
}

/// <summary>The interpolations by their names in job specs, weights tables and model cards (torchvision's <c>InterpolationMode.value</c>).</summary>
public static class Interpolations
{
    public static readonly ChoiceTable<Interpolation, Choice<Interpolation>> Choices = new(
        new(Interpolation.Bilinear, "bilinear", "Pillow's bilinear filter, antialiased when shrinking"),
        new(Interpolation.Bicubic, "bicubic", "Pillow's bicubic filter (a = -0.5), antialiased when shrinking"));
}

public sealed class InterpolationJson() : ChoiceJsonConverter<Interpolation, Choice<Interpolation>>(Interpolations.Choices);

/// <summary>
/// Pillow's resampling of 8-bit RGB (<c>Image.resize(size, Image.BILINEAR | Image.BICUBIC)</c>, libImaging/Resample.c),
/// which torchvision 0.14's <c>Resize</c> calls on PIL images: the filter widened by the scale factor when
/// shrinking (so it antialiases), fixed-point coefficients, a horizontal pass rounded and clipped to 8 bits, then
/// a vertical pass. Reproduced operation for operation so our inputs equal PyTorch users' to the byte.
/// </summary>
public static class PilResize
{
    private const int PrecisionBits = 32 - 8 - 2;
    private const int Half = 1 << (PrecisionBits - 1);

    /// <summary>Resample.c's filters: the kernel and the distance beyond which it is zero (at scale 1).</summary>
    private sealed record Filter(Func<double, double> Kernel, double Support);

    private static readonly Filter BilinearFilter = new(x =>
    {
        x = Math.Abs(x);
        return x < 1.0 ? 1.0 - x : 0.0;
    }, 1.0);

    private static readonly Filter BicubicFilter = new(x =>
    {
        // Resample.c's bicubic_filter, in its own arithmetic order so the doubles round alike.
        const double a = -0.5;
        x = Math.Abs(x);
        if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
        if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
        return 0.0;
    }, 2.0);

    private static Filter FilterOf(Interpolation interpolation) => interpolation switch
    {
        Interpolation.Bilinear => BilinearFilter,
        Interpolation.Bicubic => BicubicFilter,
        _ => throw new ArgumentOutOfRangeException(nameof(interpolation), interpolation, "not an interpolation"),
    };

    public static RgbImage Resize(RgbImage source, int width, int height, Interpolation interpolation = Interpolation.Bilinear)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(width);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(height);
        var filter = FilterOf(interpolation);
        if (width == source.Width && height == source.Height) return new RgbImage(width, height, (byte[])source.Pixels.Clone());

        var vertical = Coefficients(source.Height, height, filter);
        // Only the rows the vertical pass reads are resampled horizontally.
        int firstRow = vertical.Bounds[0];
        int lastRow = vertical.Bounds[2 * height - 2] + vertical.Bounds[2 * height - 1];
        var horizontal = width == source.Width
            ? source.Crop(0, firstRow, source.Width, lastRow - firstRow)
            : Horizontal(source, firstRow, lastRow - firstRow, width, filter);
        for (int i = 0; i < height; i++) vertical.Bounds[2 * i] -= firstRow;
        return height == source.Height ? horizontal : Vertical(horizontal, vertical, height);
    }

    private static RgbImage Horizontal(RgbImage source, int firstRow, int rows, int width, Filter filter)
    {
        var (bounds, kernel, size) = Coefficients(source.Width, width, filter);
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

    /// <summary>Resample.c's precompute_coeffs + normalize_coeffs_8bpc.</summary>
    private static (int[] Bounds, int[] Kernel, int Size) Coefficients(int inSize, int outSize, Filter filter)
    {
        double scale = (double)inSize / outSize;
        double filterScale = Math.Max(scale, 1.0);
        double support = filter.Support * filterScale;
        int size = (int)Math.Ceiling(support) * 2 + 1;
        var bounds = new int[2 * outSize];
        var kernel = new int[outSize * size];
        var weights = new double[size];
        for (int xx = 0; xx < outSize; xx++)
        {
            double center = (xx + 0.5) * scale;
            double total = 0, inverse = 1.0 / filterScale;
            // (int) truncates toward zero, as C's cast does.
            int min = Math.Max(0, (int)(center - support + 0.5));
            int max = Math.Min(inSize, (int)(center + support + 0.5)) - min;
            for (int x = 0; x < max; x++)
            {
                weights[x] = filter.Kernel((x + min - center + 0.5) * inverse);
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

    /// <summary>Resample.c's clip8: the sum back to 8 bits, clipped (bicubic's negative lobes overshoot both ways).</summary>
    private static byte Clip8(int value)
    {
        value >>= PrecisionBits;
        return value < 0 ? (byte)0 : value > 255 ? (byte)255 : (byte)value;
    }
}
