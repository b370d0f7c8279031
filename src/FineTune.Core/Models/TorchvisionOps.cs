using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace FineTune.Core.Models;

/// <summary>
/// The building blocks of torchvision.ops that ConvNeXt, EfficientNet and RegNet share (TorchVision .NET has none of
/// them public, or with other activations), under torchvision's module and parameter names.
/// </summary>
internal static class TorchvisionOps
{
    /// <summary>
    /// torchvision's Conv2dNormActivation: a Sequential of the convolution ("0"), the norm ("1") and the activation
    /// ("2", when there is one). Padding keeps the size at stride 1 unless given; the convolution has a bias only where
    /// asked, since the norm's shift makes one redundant.
    /// </summary>
    public static Sequential ConvNormActivation(long inChannels, long outChannels, long kernelSize, Module<Tensor, Tensor> norm,
        Module<Tensor, Tensor>? activation, long stride = 1, long groups = 1, bool bias = false, long? padding = null)
    {
        var layers = new List<(string, Module<Tensor, Tensor>)>
        {
            ("0", Conv2d(inChannels, outChannels, kernelSize, stride: stride, padding: padding ?? (kernelSize - 1) / 2, groups: groups, bias: bias)),
            ("1", norm),
        };
        if (activation is not null) layers.Add(("2", activation));
        return Sequential(layers);
    }
}

/// <summary>
/// torchvision.ops.SqueezeExcitation: the input scaled per channel by
/// scale_activation(fc2(activation(fc1(avgpool(input))))); the activation is the family's own (SiLU in EfficientNet,
/// ReLU in RegNet).
/// </summary>
public sealed class SqueezeExcitation : Module<Tensor, Tensor>
{
    private readonly Module<Tensor, Tensor> avgpool;
    private readonly Module<Tensor, Tensor> fc1;
    private readonly Module<Tensor, Tensor> fc2;
    private readonly Module<Tensor, Tensor> activation;
    private readonly Module<Tensor, Tensor> scale_activation;

    public SqueezeExcitation(long inputChannels, long squeezeChannels, Module<Tensor, Tensor> activation) : base(nameof(SqueezeExcitation))
    {
        avgpool = AdaptiveAvgPool2d(1);
        fc1 = Conv2d(inputChannels, squeezeChannels, 1);
        fc2 = Conv2d(squeezeChannels, inputChannels, 1);
        this.activation = activation;
        scale_activation = Sigmoid();
        RegisterComponents();
    }

    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var scale = scale_activation.call(fc2.call(activation.call(fc1.call(avgpool.call(input)))));
        return (scale * input).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// torchvision.ops.StochasticDepth in "row" mode: while training, each sample's residual branch is dropped with
/// probability p and the kept ones scaled by 1/(1 − p); in eval mode it is the identity.
/// </summary>
public sealed class StochasticDepth : Module<Tensor, Tensor>
{
    public StochasticDepth(double p) : base(nameof(StochasticDepth))
    {
        if (p is < 0 or > 1) throw new ArgumentOutOfRangeException(nameof(p), p, "drop probability must be in [0, 1]");
        P = p;
    }

    public double P { get; }

    public override Tensor forward(Tensor input)
    {
        if (!training || P == 0) return input.alias();
        using var scope = NewDisposeScope();
        double survival = 1 - P;
        var shape = new long[input.dim()];
        Array.Fill(shape, 1L);
        shape[0] = input.shape[0];
        var noise = empty(shape, input.dtype, input.device).bernoulli_(survival);
        if (survival > 0) noise.div_(survival);
        return (input * noise).MoveToOuterDisposeScope();
    }
}

/// <summary>torchvision.ops.misc.Permute: the input's dimensions reordered.</summary>
public sealed class Permute : Module<Tensor, Tensor>
{
    private readonly long[] _dims;

    public Permute(params long[] dims) : base(nameof(Permute)) => _dims = dims;

    public IReadOnlyList<long> Dims => _dims;

    public override Tensor forward(Tensor input) => input.permute(_dims);
}

/// <summary>ConvNeXt's LayerNorm2d: layer norm over the channels of an NCHW tensor (permuted to NHWC and back).</summary>
public sealed class LayerNorm2d : Module<Tensor, Tensor>
{
    private readonly Parameter weight;
    private readonly Parameter bias;

    public LayerNorm2d(long channels, double eps) : base(nameof(LayerNorm2d))
    {
        weight = new Parameter(ones(channels));
        bias = new Parameter(zeros(channels));
        Eps = eps;
        RegisterComponents();
    }

    public double Eps { get; }

    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var x = functional.layer_norm(input.permute(0, 2, 3, 1), [weight.shape[0]], weight, bias, Eps);
        return x.permute(0, 3, 1, 2).MoveToOuterDisposeScope();
    }
}
