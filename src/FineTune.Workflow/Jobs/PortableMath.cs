namespace FineTune.Workflow.Jobs;

/// <summary>
/// exp, log and the normal distribution's tail from IEEE-754 +, −, ×, ÷ and square root alone, which round alike on
/// every machine. Math.Exp and Math.Log call the platform's C library, whose last bits differ between Linux, Windows
/// and macOS, and a bayesian sweep's proposals are recomputed by whichever worker replays its orchestration.
/// </summary>
internal static class PortableMath
{
    // ln 2 split so that k × Ln2Hi is exact for the k that occur (fdlibm's constants).
    private const double Ln2Hi = 6.93147180369123816490e-01;
    private const double Ln2Lo = 1.90821492927058770002e-10;
    private const double InvLn2 = 1.44269504088896338700e+00;

    public static double Exp(double x)
    {
        if (double.IsNaN(x)) return x;
        if (x > 709.78) return double.PositiveInfinity;
        if (x < -745.2) return 0;
        double k = Math.Round(x * InvLn2);
        double r = x - k * Ln2Hi - k * Ln2Lo;
        // |r| ≤ ln2 / 2: Taylor terms past r¹³/13! are below half an ulp.
        double sum = 1;
        for (int n = 13; n >= 1; n--) sum = 1 + r * sum / n;
        return Math.ScaleB(sum, (int)k);
    }

    public static double Log(double x)
    {
        if (double.IsNaN(x) || x < 0) return double.NaN;
        if (x == 0) return double.NegativeInfinity;
        if (double.IsPositiveInfinity(x)) return x;
        int exponent = 0;
        if (x < 2.2250738585072014E-308)
        {
            // Subnormal: scale into the normal range first (exact).
            x *= 18014398509481984.0; // 2^54
            exponent = -54;
        }
        long bits = BitConverter.DoubleToInt64Bits(x);
        exponent += (int)((bits >> 52) & 0x7FF) - 1023;
        double m = BitConverter.Int64BitsToDouble((bits & 0x000F_FFFF_FFFF_FFFFL) | 0x3FF0_0000_0000_0000L);
        if (m > 1.4142135623730951)
        {
            m /= 2;
            exponent++;
        }
        // log m = 2 atanh(s), s = (m − 1)/(m + 1), |s| ≤ 0.1716: the series to s²³ is below half an ulp.
        double s = (m - 1) / (m + 1), s2 = s * s, series = 1.0 / 23;
        for (int n = 21; n >= 1; n -= 2) series = 1.0 / n + s2 * series;
        return exponent * Ln2Hi + (exponent * Ln2Lo + 2 * s * series);
    }

    /// <summary>
    /// erfc, to a relative error below 1.2e-7 over the whole line (Numerical Recipes' Chebyshev fit), so tails stay
    /// precise where 1 − erf would cancel.
    /// </summary>
    public static double Erfc(double z)
    {
        double t = 1 / (1 + 0.5 * Math.Abs(z));
        double tail = t * Exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
            + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
        return z >= 0 ? tail : 2 - tail;
    }

    /// <summary>P(a ≤ Z ≤ b) for a standard normal Z and a ≤ b, from the nearer tails so small masses keep their digits.</summary>
    public static double NormalMass(double a, double b)
    {
        const double InvSqrt2 = 0.70710678118654752440;
        if (a >= 0) return 0.5 * (Erfc(a * InvSqrt2) - Erfc(b * InvSqrt2));
        if (b <= 0) return 0.5 * (Erfc(-b * InvSqrt2) - Erfc(-a * InvSqrt2));
        return 1 - 0.5 * (Erfc(-a * InvSqrt2) + Erfc(b * InvSqrt2));
    }
}
