using FineTune.Core.Data;
using static TorchSharp.torch;

namespace FineTune.Core.Training;

/// <summary>
/// timm's <c>Mixup</c> in its default 'batch' mode: with probability <see cref="Augmentation.MixupProbability"/>
/// the batch is mixed with itself reversed, by mixup (λ ~ Beta(α, α), pixels blended) or, with probability
/// <see cref="Augmentation.MixupSwitchProbability"/> when both are on, CutMix (a box of area 1 − λ pasted, λ then
/// corrected to the box actually pasted); the targets become the same blend of the two one-hot labels, smoothed
/// (timm's <c>mixup_target</c>). A batch of odd size mixes its middle image with itself.
/// </summary>
public static class Mixup
{
    /// <summary>The mixed batch, [N, C, H, W], and its soft targets, [N, classes]; <paramref name="images"/> is not changed.</summary>
    public static (Tensor Images, Tensor Targets, double Lambda) Apply(Augmentation augmentation, Tensor images, Tensor labels, int classes, double smoothing, Random random)
    {
        var (lambda, box) = Draw(augmentation, (int)images.shape[2], (int)images.shape[3], random);
        var flipped = images.flip(0);
        Tensor mixed;
        if (box is var (top, bottom, left, right))
        {
            mixed = images.clone();
            if (bottom > top && right > left)
                mixed[TensorIndex.Colon, TensorIndex.Colon, TensorIndex.Slice(top, bottom), TensorIndex.Slice(left, right)] =
                    flipped[TensorIndex.Colon, TensorIndex.Colon, TensorIndex.Slice(top, bottom), TensorIndex.Slice(left, right)];
        }
        else
        {
            mixed = lambda == 1 ? images : images * lambda + flipped * (1 - lambda);
        }
        double off = smoothing / classes, on = 1 - smoothing + off;
        var y1 = nn.functional.one_hot(labels, classes).to(ScalarType.Float32) * (on - off) + off;
        var y2 = y1.flip(0);
        return (mixed, y1 * lambda + y2 * (1 - lambda), lambda);
    }

    /// <summary>λ and, for CutMix, the box (rows top–bottom, columns left–right, ends exclusive), as timm's <c>_params_per_batch</c> and <c>rand_bbox</c>.</summary>
    public static (double Lambda, (int Top, int Bottom, int Left, int Right)? Box) Draw(Augmentation augmentation, int height, int width, Random random)
    {
        if (!augmentation.Mixes || random.NextDouble() >= augmentation.MixupProbability) return (1, null);
        bool cutmix = augmentation.CutmixAlpha > 0 && (augmentation.MixupAlpha <= 0 || random.NextDouble() < augmentation.MixupSwitchProbability);
        double lambda = Beta(cutmix ? augmentation.CutmixAlpha : augmentation.MixupAlpha, random);
        if (!cutmix) return (lambda, null);
        double ratio = Math.Sqrt(1 - lambda);
        int cutH = (int)(height * ratio), cutW = (int)(width * ratio);
        int cy = random.Next(height), cx = random.Next(width);
        int top = Math.Clamp(cy - cutH / 2, 0, height), bottom = Math.Clamp(cy + cutH / 2, 0, height);
        int left = Math.Clamp(cx - cutW / 2, 0, width), right = Math.Clamp(cx + cutW / 2, 0, width);
        // timm's correct_lam: λ is the share of the image left unpasted.
        lambda = 1 - (double)(bottom - top) * (right - left) / (height * width);
        return (lambda, (top, bottom, left, right));
    }

    /// <summary>Beta(α, α) as X / (X + Y) of two Gamma(α) draws.</summary>
    public static double Beta(double alpha, Random random)
    {
        double x = Gamma(alpha, random), y = Gamma(alpha, random);
        return x + y == 0 ? 0.5 : x / (x + y);
    }

    /// <summary>Marsaglia and Tsang's Gamma(shape, 1), boosted by U^(1/shape) below shape 1.</summary>
    private static double Gamma(double shape, Random random)
    {
        if (shape < 1) return Gamma(shape + 1, random) * Math.Pow(1.0 - random.NextDouble(), 1 / shape);
        double d = shape - 1 / 3.0, c = 1 / Math.Sqrt(9 * d);
        while (true)
        {
            double x, v;
            do
            {
                x = Gaussian.Next(random);
                v = 1 + c * x;
            }
            while (v <= 0);
            v = v * v * v;
            double u = 1.0 - random.NextDouble();
            if (Math.Log(u) < 0.5 * x * x + d - d * v + d * Math.Log(v)) return d * v;
        }
    }

    /// <summary>Cross-entropy against soft targets (timm's <c>SoftTargetCrossEntropy</c>), each class's term weighted when <paramref name="classWeights"/> is given.</summary>
    public static Tensor SoftTargetLoss(Tensor logits, Tensor targets, Tensor? classWeights)
    {
        var terms = -targets * nn.functional.log_softmax(logits, 1);
        if (classWeights is not null) terms *= classWeights;
        return terms.sum(1).mean();
    }
}
