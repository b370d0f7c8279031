using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace FineTune.Core.Models;

/// <summary>Pieces torchvision's attention families (ViT, Swin, MaxViT) share, under torchvision's names.</summary>
internal static class TransformerParts
{
    /// <summary>
    /// torchvision's <c>ops.MLP(dim, [hidden, dim], activation_layer=GELU)</c>: Linear, GELU, Dropout, Linear, Dropout,
    /// so its weights are <c>0.*</c> and <c>3.*</c> as in torchvision's state dicts.
    /// </summary>
    public static Sequential Mlp(long dim, long hidden, double dropout = 0) =>
        Sequential(Linear(dim, hidden), GELU(), Dropout(dropout), Linear(hidden, dim), Dropout(dropout));

    /// <summary>
    /// torch.nn.init.trunc_normal_ as PyTorch computes it (inverse CDF of a uniform draw, then clamped to [a, b]).
    /// TorchSharp 0.107's native one leaves NaNs in large tensors (a 3072×768 linear gets some): it does not clamp the
    /// infinities the inverse error function gives at ±1.
    /// </summary>
    public static void TruncatedNormal(Tensor tensor, double std, double a = -2, double b = 2)
    {
        using var _ = no_grad();
        static double Cdf(double x) => (1 + Erf(x / Math.Sqrt(2))) / 2;
        tensor.uniform_(2 * Cdf(a / std) - 1, 2 * Cdf(b / std) - 1).erfinv_().mul_(std * Math.Sqrt(2)).clamp_(a, b);
    }

    /// <summary>The error function (Abramowitz and Stegun 7.1.26, |error| &lt; 1.5e-7): only the draw's bounds need it.</summary>
    private static double Erf(double x)
    {
        double t = 1 / (1 + 0.3275911 * Math.Abs(x));
        double y = 1 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.Exp(-x * x);
        return Math.Sign(x) * y;
    }

    /// <summary>
    /// torchvision's <c>ops.stochastic_depth(mode="row")</c>: while training, drops each sample's residual branch with
    /// probability <paramref name="probability"/> and scales the survivors; the identity in eval.
    /// </summary>
    public static Tensor StochasticDepth(Tensor input, double probability, bool training)
    {
        if (!training || probability == 0) return input;
        double survival = 1 - probability;
        var shape = new long[input.dim()];
        Array.Fill(shape, 1L);
        shape[0] = input.shape[0];
        var noise = empty(shape, input.dtype, input.device).bernoulli_(survival);
        if (survival > 0) noise.div_(survival);
        return input * noise;
    }

    /// <summary>
    /// The bias of every query-key pair of a window from a learned table over relative offsets: the table's rows picked by
    /// the index buffer, laid out [1, heads, tokens, tokens] to add to the attention logits.
    /// </summary>
    public static Tensor RelativePositionBias(Tensor table, Tensor index, long tokens) =>
        table.index_select(0, index.flatten()).view(tokens, tokens, -1).permute(2, 0, 1).unsqueeze(0);

    /// <summary>
    /// torchvision's relative position index for a <paramref name="height"/>×<paramref name="width"/> window: for each pair
    /// of its tokens, the row of the bias table holding their offset, [tokens, tokens].
    /// </summary>
    public static Tensor RelativePositionIndex(long height, long width)
    {
        long tokens = height * width;
        var index = new long[tokens * tokens];
        for (long a = 0; a < tokens; a++)
            for (long b = 0; b < tokens; b++)
            {
                long dh = a / width - b / width + height - 1;
                long dw = a % width - b % width + width - 1;
                index[a * tokens + b] = dh * (2 * width - 1) + dw;
            }
        return tensor(index, [tokens, tokens]);
    }

    /// <summary>torchvision's <c>ops.misc.Permute</c>: a view with its dimensions reordered, no parameters.</summary>
    public sealed class Permute(params long[] dims) : Module<Tensor, Tensor>(nameof(Permute))
    {
        public override Tensor forward(Tensor input) => input.permute(dims);
    }
}
