using System.Globalization;

namespace FineTune.Core.Data;

/// <summary>
/// torchvision 0.14's <c>transforms.functional</c> on PIL images, for the ops that train-time augmentation uses,
/// reproduced operation for operation from Pillow 9.4 (Geometry.c's nearest-neighbour affine transform, Filter.c's
/// 3×3 filter, Blend.c, Convert.c's RGB→L, ImageOps' lookup tables), so an augmented image equals a PyTorch
/// user's to the byte (tested against torchvision on real photos). Each returns a new image.
/// </summary>
public static class ImageOps
{
    /// <summary><c>F.hflip</c>.</summary>
    public static RgbImage HorizontalFlip(RgbImage image)
    {
        var result = new RgbImage(image.Width, image.Height, (byte[])image.Pixels.Clone());
        result.MirrorInPlace();
        return result;
    }

    /// <summary><c>F.resized_crop(img, top, left, height, width, [size, size], interpolation)</c>.</summary>
    public static RgbImage ResizedCrop(RgbImage image, int top, int left, int height, int width, int outputWidth, int outputHeight, Interpolation interpolation) =>
        PilResize.Resize(image.Crop(left, top, width, height), outputWidth, outputHeight, interpolation);

    /// <summary>
    /// <c>F.affine(img, angle, translate, scale, shear, NEAREST, fill=0, center)</c>: the inverse matrix as
    /// torchvision computes it, then Pillow's <c>Image.transform(AFFINE)</c>. <paramref name="center"/> null is the
    /// image's centre.
    /// </summary>
    public static RgbImage Affine(RgbImage image, double angle, (double X, double Y) translate, double scale, (double X, double Y) shear, (double X, double Y)? center = null)
    {
        var (cx, cy) = center ?? (image.Width * 0.5, image.Height * 0.5);
        double rot = Radians(angle), sx = Radians(shear.X), sy = Radians(shear.Y);
        double a = Math.Cos(rot - sy) / Math.Cos(sy);
        double b = -Math.Cos(rot - sy) * Math.Tan(sx) / Math.Cos(sy) - Math.Sin(rot);
        double c = Math.Sin(rot - sy) / Math.Cos(sy);
        double d = -Math.Sin(rot - sy) * Math.Tan(sx) / Math.Cos(sy) + Math.Cos(rot);
        double[] m = [d / scale, -b / scale, 0.0 / scale, -c / scale, a / scale, 0.0 / scale];
        m[2] += m[0] * (-cx - translate.X) + m[1] * (-cy - translate.Y);
        m[5] += m[3] * (-cx - translate.X) + m[4] * (-cy - translate.Y);
        m[2] += cx;
        m[5] += cy;
        return Transform(image, m);
    }

    /// <summary>
    /// <c>F.rotate(img, angle, NEAREST, expand=False, fill=0)</c>, counter-clockwise in degrees: Pillow's
    /// <c>Image.rotate</c>, whose quarter turns of a square image are exact transposes.
    /// </summary>
    public static RgbImage Rotate(RgbImage image, double angle)
    {
        angle = PythonModulo(angle, 360.0);
        if (angle == 0) return new RgbImage(image.Width, image.Height, (byte[])image.Pixels.Clone());
        if (angle == 180) return Transpose(image, (w, h, x, y) => (w - 1 - x, h - 1 - y), sameShape: true);
        if (angle is 90 or 270 && image.Width == image.Height)
        {
            return angle == 90
                ? Transpose(image, (w, _, x, y) => (w - 1 - y, x), sameShape: true)
                : Transpose(image, (_, h, x, y) => (y, h - 1 - x), sameShape: true);
        }
        double cx = image.Width / 2.0, cy = image.Height / 2.0;
        double radians = -Radians(angle);
        double cos = Round15(Math.Cos(radians)), sin = Round15(Math.Sin(radians)), minusSin = Round15(-Math.Sin(radians));
        double[] m = [cos, sin, 0.0, minusSin, cos, 0.0];
        double x0 = -cx - 0, y0 = -cy - 0;
        (m[2], m[5]) = (m[0] * x0 + m[1] * y0 + m[2], m[3] * x0 + m[4] * y0 + m[5]);
        m[2] += cx;
        m[5] += cy;
        return Transform(image, m);
    }

    /// <summary><c>F.adjust_brightness</c>: Pillow's <c>ImageEnhance.Brightness</c>, a blend with black.</summary>
    public static RgbImage Brightness(RgbImage image, double factor) => Blend(new byte[image.Pixels.Length], image, factor);

    /// <summary><c>F.adjust_saturation</c>: Pillow's <c>ImageEnhance.Color</c>, a blend with the image's greyscale.</summary>
    public static RgbImage Color(RgbImage image, double factor)
    {
        var gray = new byte[image.Pixels.Length];
        var p = image.Pixels;
        for (int i = 0; i < p.Length; i += 3) gray[i] = gray[i + 1] = gray[i + 2] = Luma(p[i], p[i + 1], p[i + 2]);
        return Blend(gray, image, factor);
    }

    /// <summary><c>F.adjust_contrast</c>: Pillow's <c>ImageEnhance.Contrast</c>, a blend with the mean grey level (rounded).</summary>
    public static RgbImage Contrast(RgbImage image, double factor)
    {
        var p = image.Pixels;
        long sum = 0;
        for (int i = 0; i < p.Length; i += 3) sum += Luma(p[i], p[i + 1], p[i + 2]);
        byte mean = (byte)(int)((double)sum / (p.Length / 3) + 0.5);
        var degenerate = new byte[p.Length];
        Array.Fill(degenerate, mean);
        return Blend(degenerate, image, factor);
    }

    /// <summary>
    /// <c>F.adjust_sharpness</c>: Pillow's <c>ImageEnhance.Sharpness</c>, a blend with <c>ImageFilter.SMOOTH</c>
    /// (a 3×3 kernel 1 1 1 / 1 5 1 / 1 1 1 over 13, in floats; the border rows and columns kept).
    /// </summary>
    public static RgbImage Sharpness(RgbImage image, double factor)
    {
        int w = image.Width, h = image.Height, row = image.RowBytes;
        var p = image.Pixels;
        var smooth = (byte[])p.Clone();
        if (w >= 3 && h >= 3)
        {
            float edge = 1f / 13f, centre = 5f / 13f;
            for (int y = 1; y < h - 1; y++)
            {
                for (int x = 1; x < w - 1; x++)
                {
                    for (int ch = 0; ch < 3; ch++)
                    {
                        int o = y * row + 3 * x + ch;
                        float ss = 0.5f;
                        ss += p[o + row - 3] * edge + p[o + row] * edge + p[o + row + 3] * edge;
                        ss += p[o - 3] * edge + p[o] * centre + p[o + 3] * edge;
                        ss += p[o - row - 3] * edge + p[o - row] * edge + p[o - row + 3] * edge;
                        smooth[o] = ss <= 0 ? (byte)0 : ss >= 255 ? (byte)255 : (byte)ss;
                    }
                }
            }
        }
        return Blend(smooth, image, factor);
    }

    /// <summary><c>F.posterize</c>: each channel keeps its <paramref name="bits"/> high bits.</summary>
    public static RgbImage Posterize(RgbImage image, int bits)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bits);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(bits, 8);
        int mask = ~((1 << (8 - bits)) - 1);
        return Lookup(image, _ => [.. Enumerable.Range(0, 256).Select(i => (byte)(i & mask))]);
    }

    /// <summary><c>F.solarize</c>: values at or above <paramref name="threshold"/> inverted.</summary>
    public static RgbImage Solarize(RgbImage image, double threshold) =>
        Lookup(image, _ => [.. Enumerable.Range(0, 256).Select(i => (byte)(i < threshold ? i : 255 - i))]);

    /// <summary><c>F.autocontrast</c>: Pillow's <c>ImageOps.autocontrast</c>, each channel stretched to 0–255.</summary>
    public static RgbImage AutoContrast(RgbImage image) => Lookup(image, histogram =>
    {
        int lo = Array.FindIndex(histogram, n => n != 0), hi = Array.FindLastIndex(histogram, n => n != 0);
        if (hi <= lo) return [.. Enumerable.Range(0, 256).Select(i => (byte)i)];
        double scale = 255.0 / (hi - lo), offset = -lo * scale;
        return [.. Enumerable.Range(0, 256).Select(i => (byte)Math.Clamp((int)(i * scale + offset), 0, 255))];
    });

    /// <summary><c>F.equalize</c>: Pillow's <c>ImageOps.equalize</c>, each channel's histogram flattened.</summary>
    public static RgbImage Equalize(RgbImage image) => Lookup(image, histogram =>
    {
        var used = histogram.Where(n => n != 0).ToArray();
        long step = used.Length <= 1 ? 0 : (used.Sum() - used[^1]) / 255;
        if (step == 0) return [.. Enumerable.Range(0, 256).Select(i => (byte)i)];
        var lut = new byte[256];
        long n = step / 2;
        for (int i = 0; i < 256; i++)
        {
            // The last bin's value can come out as 256; Pillow's point() clips its table to 8 bits.
            lut[i] = (byte)Math.Min(255, n / step);
            n += histogram[i];
        }
        return lut;
    });

    /// <summary>Pillow's <c>Image.blend(degenerate, image, factor)</c> for 8-bit bands, in single precision as Blend.c.</summary>
    private static RgbImage Blend(byte[] degenerate, RgbImage image, double factor)
    {
        float alpha = (float)factor;
        var p = image.Pixels;
        if (alpha == 0) return new RgbImage(image.Width, image.Height, degenerate);
        if (alpha == 1) return new RgbImage(image.Width, image.Height, (byte[])p.Clone());
        var result = new byte[p.Length];
        bool interpolates = alpha is >= 0 and <= 1;
        for (int i = 0; i < p.Length; i++)
        {
            float value = degenerate[i] + alpha * (p[i] - degenerate[i]);
            result[i] = interpolates ? (byte)value : value <= 0 ? (byte)0 : value >= 255 ? (byte)255 : (byte)value;
        }
        return new RgbImage(image.Width, image.Height, result);
    }

    /// <summary>Convert.c's rgb2l (ITU-R 601-2 luma in 16.16 fixed point).</summary>
    private static byte Luma(int r, int g, int b) => (byte)((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16);

    /// <summary>Each channel through its own table, made from that channel's histogram.</summary>
    private static RgbImage Lookup(RgbImage image, Func<long[], byte[]> table)
    {
        var p = image.Pixels;
        var result = new byte[p.Length];
        for (int ch = 0; ch < 3; ch++)
        {
            var histogram = new long[256];
            for (int i = ch; i < p.Length; i += 3) histogram[p[i]]++;
            var lut = table(histogram);
            for (int i = ch; i < p.Length; i += 3) result[i] = lut[p[i]];
        }
        return new RgbImage(image.Width, image.Height, result);
    }

    private static RgbImage Transpose(RgbImage image, Func<int, int, int, int, (int X, int Y)> sourceOf, bool sameShape)
    {
        int w = image.Width, h = image.Height;
        var result = sameShape ? new RgbImage(w, h) : new RgbImage(h, w);
        for (int y = 0; y < result.Height; y++)
        {
            for (int x = 0; x < result.Width; x++)
            {
                var (sx, sy) = sourceOf(w, h, x, y);
                image.Pixels.AsSpan(3 * (sy * w + sx), 3).CopyTo(result.Pixels.AsSpan(3 * (y * result.Width + x)));
            }
        }
        return result;
    }

    /// <summary>
    /// Pillow's <c>ImagingTransformAffine</c> with NEAREST into an image of the same size filled with black:
    /// a pure scale/translation pretabulates columns, other matrices step in 16.16 fixed point while every corner
    /// stays within ±32768, in doubles otherwise. Output pixel (x, y) samples the matrix at (x + ½, y + ½).
    /// </summary>
    private static RgbImage Transform(RgbImage image, double[] a)
    {
        int w = image.Width, h = image.Height;
        var result = new RgbImage(w, h);
        if (a[1] == 0 && a[3] == 0)
        {
            // ImagingScaleAffine, whose row start is a[5] + a[4] · ½ (it ignores a[3], zero here anyway).
            double xo = a[2] + a[0] * 0.5, yo = a[5] + a[4] * 0.5;
            var columns = new int[w];
            for (int x = 0; x < w; x++, xo += a[0]) columns[x] = Coord(xo);
            for (int y = 0; y < h; y++, yo += a[4])
            {
                int yi = Coord(yo);
                if (yi < 0 || yi >= h) continue;
                for (int x = 0; x < w; x++)
                {
                    if (columns[x] >= 0 && columns[x] < w) CopyPixel(image, columns[x], yi, result, x, y);
                }
            }
            return result;
        }
        if (Fixed(a, 0, 0) && Fixed(a, w, h) && Fixed(a, 0, h) && Fixed(a, w, 0))
        {
            int a0 = Fix(a[0]), a1 = Fix(a[1]), a3 = Fix(a[3]), a4 = Fix(a[4]);
            int a2 = Fix(a[2] + a[0] * 0.5 + a[1] * 0.5), a5 = Fix(a[5] + a[3] * 0.5 + a[4] * 0.5);
            for (int y = 0; y < h; y++, a2 += a1, a5 += a4)
            {
                int xx = a2, yy = a5;
                for (int x = 0; x < w; x++, xx += a0, yy += a3)
                {
                    int xin = xx >> 16, yin = yy >> 16;
                    if (xin >= 0 && xin < w && yin >= 0 && yin < h) CopyPixel(image, xin, yin, result, x, y);
                }
            }
            return result;
        }
        double rowX = a[2] + a[1] * 0.5 + a[0] * 0.5, rowY = a[5] + a[4] * 0.5 + a[3] * 0.5;
        for (int y = 0; y < h; y++, rowX += a[1], rowY += a[4])
        {
            double xx = rowX, yy = rowY;
            for (int x = 0; x < w; x++, xx += a[0], yy += a[3])
            {
                int xin = Coord(xx), yin = Coord(yy);
                if (xin >= 0 && xin < w && yin >= 0 && yin < h) CopyPixel(image, xin, yin, result, x, y);
            }
        }
        return result;
    }

    private static void CopyPixel(RgbImage from, int fx, int fy, RgbImage to, int x, int y) =>
        from.Pixels.AsSpan(3 * (fy * from.Width + fx), 3).CopyTo(to.Pixels.AsSpan(3 * (y * to.Width + x)));

    /// <summary>Geometry.c's COORD: truncation, with every negative coordinate outside.</summary>
    private static int Coord(double v) => v < 0.0 ? -1 : (int)v;

    private static bool Fixed(double[] a, int x, int y) =>
        Math.Abs(x * a[0] + y * a[1] + a[2]) < 32768.0 && Math.Abs(x * a[3] + y * a[4] + a[5]) < 32768.0;

    /// <summary>Geometry.c's FIX: 16.16 fixed point, rounded half up.</summary>
    private static int Fix(double v)
    {
        v = v * 65536.0 + 0.5;
        return v < 0.0 ? (int)Math.Floor(v) : (int)v;
    }

    /// <summary>Python's <c>math.radians</c> (x · (π / 180), the constant folded first).</summary>
    private static double Radians(double degrees) => degrees * (Math.PI / 180.0);

    /// <summary>Python's float <c>%</c>: the result takes the divisor's sign.</summary>
    private static double PythonModulo(double x, double divisor)
    {
        double mod = x % divisor;
        if (mod != 0) return (divisor < 0) != (mod < 0) ? mod + divisor : mod;
        return Math.CopySign(0, divisor);
    }

    /// <summary>Python's <c>round(x, 15)</c>, decimal rounding half to even of the shortest repr (Pillow rounds rotate's matrix so).</summary>
    private static double Round15(double x) =>
        double.Parse(Math.Round(decimal.Parse(x.ToString("R", CultureInfo.InvariantCulture), NumberStyles.Float, CultureInfo.InvariantCulture), 15, MidpointRounding.ToEven)
            .ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
}
