using System.Globalization;
using System.Text.RegularExpressions;

namespace FineTune.Core.Data;

/// <summary>The ops of torchvision 0.14's TrivialAugmentWide and RandAugment, in their order.</summary>
public enum AugmentOp
{
    Identity,
    ShearX,
    ShearY,
    TranslateX,
    TranslateY,
    Rotate,
    Brightness,
    Color,
    Contrast,
    Sharpness,
    Posterize,
    Solarize,
    AutoContrast,
    Equalize,
}

/// <summary>
/// An automatic augmentation policy, named as timm's <c>--aa</c> names it: <c>trivialaugment</c> (torchvision's
/// TrivialAugmentWide) or <c>rand-m{M}[-n{N}][-mstd{S}]</c> (RandAugment: N ops, 2 unless given, each at magnitude
/// M of 10 as timm counts it, jittered by a normal of standard deviation S, 0 unless given, clipped to 0–10).
/// Both draw one of <see cref="AugmentOp"/>'s 14 ops uniformly per step and apply it as torchvision's
/// <c>_apply_op</c> does (nearest-neighbour geometry, black fill).
/// </summary>
public abstract partial record AutoAugment
{
    /// <summary>The policy's name as the job spec writes it.</summary>
    public abstract string Name { get; }

    public abstract RgbImage Apply(RgbImage image, Random random);

    public const string TrivialAugmentName = "trivialaugment";

    /// <summary>What <see cref="Parse"/> reads, for error messages and the schema.</summary>
    public const string Grammar = "'trivialaugment' or 'rand-m{0-10}[-n{1-10}][-mstd{0-10}]', e.g. 'rand-m9-mstd0.5'";

    /// <summary>The policy named <paramref name="name"/>; a <see cref="FormatException"/> saying why not otherwise.</summary>
    public static AutoAugment Parse(string name)
    {
        if (name == TrivialAugmentName) return new TrivialAugmentWide();
        var match = RandPattern().Match(name);
        if (!match.Success) throw new FormatException($"'{name}' is not {Grammar}");
        double magnitude = double.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture);
        int ops = match.Groups[2].Success ? int.Parse(match.Groups[2].Value, CultureInfo.InvariantCulture) : RandAugment.DefaultOps;
        double std = match.Groups[3].Success ? double.Parse(match.Groups[3].Value, CultureInfo.InvariantCulture) : 0;
        if (magnitude > RandAugment.MaxLevel) throw new FormatException($"'{name}': the magnitude m must be 0-{RandAugment.MaxLevel}");
        if (ops is < 1 or > 10) throw new FormatException($"'{name}': the number of ops n must be 1-10");
        if (std > RandAugment.MaxLevel) throw new FormatException($"'{name}': mstd must be 0-{RandAugment.MaxLevel}");
        return new RandAugment(magnitude, ops, std);
    }

    private const string RandAugmentPattern = @"rand-m(\d+(?:\.\d+)?)(?:-n(\d+))?(?:-mstd(\d+(?:\.\d+)?))?";

    /// <summary>The names' shape as a JSON Schema pattern (ranges are checked by <see cref="Parse"/>).</summary>
    public const string Pattern = "^(" + TrivialAugmentName + "|" + RandAugmentPattern + ")$";

    [GeneratedRegex("^" + RandAugmentPattern + "$")]
    private static partial Regex RandPattern();

    /// <summary>
    /// torchvision's <c>_apply_op(img, op, magnitude, NEAREST, fill=None)</c>: shears by atan(magnitude) about the
    /// top-left corner, translations by int(magnitude) pixels, enhancements by 1 + magnitude, posterize to
    /// int(magnitude) bits, solarize at magnitude.
    /// </summary>
    public static RgbImage ApplyOp(RgbImage image, AugmentOp op, double magnitude) => op switch
    {
        AugmentOp.Identity => image,
        AugmentOp.ShearX => ImageOps.Affine(image, 0.0, (0, 0), 1.0, (Degrees(Math.Atan(magnitude)), 0.0), (0, 0)),
        AugmentOp.ShearY => ImageOps.Affine(image, 0.0, (0, 0), 1.0, (0.0, Degrees(Math.Atan(magnitude))), (0, 0)),
        AugmentOp.TranslateX => ImageOps.Affine(image, 0.0, ((int)magnitude, 0), 1.0, (0.0, 0.0)),
        AugmentOp.TranslateY => ImageOps.Affine(image, 0.0, (0, (int)magnitude), 1.0, (0.0, 0.0)),
        AugmentOp.Rotate => ImageOps.Rotate(image, magnitude),
        AugmentOp.Brightness => ImageOps.Brightness(image, 1.0 + magnitude),
        AugmentOp.Color => ImageOps.Color(image, 1.0 + magnitude),
        AugmentOp.Contrast => ImageOps.Contrast(image, 1.0 + magnitude),
        AugmentOp.Sharpness => ImageOps.Sharpness(image, 1.0 + magnitude),
        AugmentOp.Posterize => ImageOps.Posterize(image, (int)magnitude),
        AugmentOp.Solarize => ImageOps.Solarize(image, magnitude),
        AugmentOp.AutoContrast => ImageOps.AutoContrast(image),
        AugmentOp.Equalize => ImageOps.Equalize(image),
        _ => throw new ArgumentOutOfRangeException(nameof(op), op, "not an op"),
    };

    /// <summary>Whether the op's magnitude takes a random sign (the geometric and enhancement ops).</summary>
    public static bool IsSigned(AugmentOp op) => op is >= AugmentOp.ShearX and <= AugmentOp.Sharpness;

    /// <summary>Whether the op has a magnitude at all.</summary>
    public static bool HasMagnitude(AugmentOp op) => op is not (AugmentOp.Identity or AugmentOp.AutoContrast or AugmentOp.Equalize);

    protected static AugmentOp DrawOp(Random random) => (AugmentOp)random.Next(Enum.GetValues<AugmentOp>().Length);

    protected static double WithSign(AugmentOp op, double magnitude, Random random) =>
        IsSigned(op) && random.Next(2) == 1 ? -magnitude : magnitude;

    /// <summary>Python's <c>math.degrees</c> (x · (180 / π), the constant folded first).</summary>
    private static double Degrees(double radians) => radians * (180.0 / Math.PI);

    /// <summary>
    /// torch.linspace(start, end, steps) in float32, element <paramref name="index"/>, as torch 1.13's AVX2 CPU kernel
    /// (the one Debian's build runs) rounds it: the first half from the start, the second from the end, multiply-adds
    /// fused by the compiler, and the first whole 16 elements built 8 at a time from their block's first.
    /// </summary>
    public static float Linspace(float start, float end, int steps, int index)
    {
        const int lanes = 8;
        float step = (end - start) / (steps - 1);
        int halfway = steps / 2;
        float From(int i) => i < halfway ? MathF.FusedMultiplyAdd(step, i, start) : MathF.FusedMultiplyAdd(-step, steps - i - 1, end);
        if (index >= steps / (2 * lanes) * 2 * lanes) return From(index);
        int block = index / lanes * lanes;
        float product = (index - block) * step;
        return From(block) + product;
    }
}

/// <summary>
/// torchvision 0.14's <c>TrivialAugmentWide()</c>: one op, one of 31 magnitude bins, uniformly (shear and
/// enhancements up to 0.99, translation up to 32 px, rotation up to 135°, posterize 8 to 2 bits, solarize 255 to 0).
/// </summary>
public sealed record TrivialAugmentWide : AutoAugment
{
    public const int Bins = 31;

    public override string Name => TrivialAugmentName;

    public override RgbImage Apply(RgbImage image, Random random)
    {
        var op = DrawOp(random);
        double magnitude = HasMagnitude(op) ? Magnitude(op, random.Next(Bins)) : 0.0;
        return ApplyOp(image, op, WithSign(op, magnitude, random));
    }

    /// <summary>The op's magnitude in bin <paramref name="bin"/> (torchvision's <c>_augmentation_space(31)</c>, float32 values).</summary>
    public static double Magnitude(AugmentOp op, int bin) => op switch
    {
        AugmentOp.ShearX or AugmentOp.ShearY or AugmentOp.Brightness or AugmentOp.Color or AugmentOp.Contrast or AugmentOp.Sharpness
            => Linspace(0f, 0.99f, Bins, bin),
        AugmentOp.TranslateX or AugmentOp.TranslateY => Linspace(0f, 32f, Bins, bin),
        AugmentOp.Rotate => Linspace(0f, 135f, Bins, bin),
        AugmentOp.Posterize => 8 - (int)MathF.Round(bin / ((Bins - 1) / 6f), MidpointRounding.ToEven),
        AugmentOp.Solarize => Linspace(255f, 0f, Bins, bin),
        _ => 0.0,
    };
}

/// <summary>
/// RandAugment on torchvision 0.14's op set and ranges (shear 0.3, translation 150/331 of the side, rotation 30°,
/// enhancements 0.9, posterize 8 to 4 bits, solarize 255 to 0), at magnitude <paramref name="Level"/> of 10 as
/// timm's <c>rand-m9</c> counts it: level L is torchvision's bin 3L of 31, so <c>rand-m9</c> is torchvision's
/// <c>RandAugment(num_ops=2, magnitude=27)</c> up to float32 rounding; <paramref name="LevelStd"/> &gt; 0 draws each
/// op's level from a normal around it (timm's <c>mstd</c>), clipped to 0–10.
/// </summary>
public sealed record RandAugment(double Level, int Ops = RandAugment.DefaultOps, double LevelStd = 0) : AutoAugment
{
    public const int DefaultOps = 2;
    public const double MaxLevel = 10;

    public override string Name => "rand-m" + Level.ToString(CultureInfo.InvariantCulture)
        + (Ops == DefaultOps ? "" : $"-n{Ops}") + (LevelStd > 0 ? "-mstd" + LevelStd.ToString(CultureInfo.InvariantCulture) : "");

    public override RgbImage Apply(RgbImage image, Random random)
    {
        for (int i = 0; i < Ops; i++)
        {
            var op = DrawOp(random);
            double level = LevelStd > 0 ? Math.Clamp(Level + LevelStd * Gaussian.Next(random), 0, MaxLevel) : Level;
            double magnitude = Magnitude(op, level, image.Width, image.Height);
            image = ApplyOp(image, op, WithSign(op, magnitude, random));
        }
        return image;
    }

    /// <summary>The op's magnitude at <paramref name="level"/> (0–10) for a <paramref name="width"/> × <paramref name="height"/> image.</summary>
    public static double Magnitude(AugmentOp op, double level, int width, int height)
    {
        double f = level / MaxLevel;
        return op switch
        {
            AugmentOp.ShearX or AugmentOp.ShearY => 0.3 * f,
            AugmentOp.TranslateX => 150.0 / 331.0 * width * f,
            AugmentOp.TranslateY => 150.0 / 331.0 * height * f,
            AugmentOp.Rotate => 30.0 * f,
            AugmentOp.Brightness or AugmentOp.Color or AugmentOp.Contrast or AugmentOp.Sharpness => 0.9 * f,
            AugmentOp.Posterize => 8 - (int)Math.Round(4 * f, MidpointRounding.ToEven),
            AugmentOp.Solarize => 255.0 * (1 - f),
            _ => 0.0,
        };
    }
}

/// <summary>Standard normal draws from a <see cref="Random"/> (Box–Muller), so they replay from its seed.</summary>
public static class Gaussian
{
    public static double Next(Random random)
    {
        double u = 1.0 - random.NextDouble(), v = random.NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u)) * Math.Cos(2.0 * Math.PI * v);
    }
}
