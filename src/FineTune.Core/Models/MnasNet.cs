using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace FineTune.Core.Models;

/// <summary>
/// torchvision 0.14's MNASNet B1 (TorchVision .NET has none), with its module and parameter names so that
/// torchvision checkpoints load unchanged. This is torchvision's version 2, whose stem scales with the width
/// multiplier; every weights tag torchvision 0.14 publishes is of that version.
/// </summary>
public sealed class MnasNet : Module<Tensor, Tensor>
{
    /// <summary>The paper's TensorFlow momentum 0.9997, in PyTorch's convention.</summary>
    private const double BatchNormMomentum = 1 - 0.9997;

    private readonly Sequential layers;
    private readonly Sequential classifier;

    /// <summary>torchvision's builders by name.</summary>
    public static readonly IReadOnlyList<(string Name, Func<MnasNet> Create)> Builders =
    [
        ("mnasnet0_5", () => Create(0.5)),
        ("mnasnet0_75", () => Create(0.75)),
        ("mnasnet1_0", () => Create(1.0)),
        ("mnasnet1_3", () => Create(1.3)),
    ];

    private MnasNet(double alpha, int numClasses, double dropout) : base(nameof(MnasNet))
    {
        var depths = Depths(alpha);
        layers = Sequential(
            // Stem: a regular convolution, then a depthwise separable one with no skip.
            Conv2d(3, depths[0], kernel_size: 3, padding: 1, stride: 2, bias: false),
            Norm(depths[0]),
            ReLU(inplace: true),
            Conv2d(depths[0], depths[0], kernel_size: 3, padding: 1, stride: 1, groups: depths[0], bias: false),
            Norm(depths[0]),
            ReLU(inplace: true),
            Conv2d(depths[0], depths[1], kernel_size: 1, bias: false),
            Norm(depths[1]),
            // Stacks of inverted residuals: kernel size, stride, expansion factor, repeats.
            Stack(depths[1], depths[2], 3, 2, 3, 3),
            Stack(depths[2], depths[3], 5, 2, 3, 3),
            Stack(depths[3], depths[4], 5, 2, 6, 3),
            Stack(depths[4], depths[5], 3, 1, 6, 2),
            Stack(depths[5], depths[6], 5, 2, 6, 4),
            Stack(depths[6], depths[7], 3, 1, 6, 1),
            Conv2d(depths[7], 1280, kernel_size: 1, bias: false),
            Norm(1280),
            ReLU(inplace: true));
        classifier = Sequential(Dropout(dropout, inplace: true), Linear(1280, numClasses));
        RegisterComponents();

        // torchvision's initialisation, so a fresh model trains like theirs.
        foreach (var module in modules())
        {
            switch (module)
            {
                case Conv2d conv:
                    init.kaiming_normal_(conv.weight, mode: init.FanInOut.FanOut, nonlinearity: init.NonlinearityType.ReLU);
                    if (conv.bias is not null) init.zeros_(conv.bias);
                    break;
                case BatchNorm2d norm: init.ones_(norm.weight); init.zeros_(norm.bias); break;
                case Linear linear:
                    init.kaiming_uniform_(linear.weight, mode: init.FanInOut.FanOut, nonlinearity: init.NonlinearityType.Sigmoid);
                    init.zeros_(linear.bias);
                    break;
            }
        }
    }

    public static MnasNet Create(double alpha, int numClasses = 1000, double dropout = 0.2)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(alpha);
        return new(alpha, numClasses, dropout);
    }

    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        return classifier.call(layers.call(input).mean([2, 3])).MoveToOuterDisposeScope();
    }

    /// <summary>torchvision's _get_depths: the paper's channel counts scaled by <paramref name="alpha"/>, to multiples of 8.</summary>
    public static int[] Depths(double alpha) => [.. PaperDepths.Select(depth => RoundToMultipleOf(depth * alpha, 8))];

    private static readonly int[] PaperDepths = [32, 16, 24, 40, 80, 96, 192, 320];

    /// <summary>torchvision's _round_to_multiple_of: to the nearest multiple, but up when rounding down loses more than 10%.</summary>
    private static int RoundToMultipleOf(double value, int divisor, double roundUpBias = 0.9)
    {
        int rounded = Math.Max(divisor, (int)(value + divisor / 2.0) / divisor * divisor);
        return rounded >= roundUpBias * value ? rounded : rounded + divisor;
    }

    private static BatchNorm2d Norm(int channels) => BatchNorm2d(channels, momentum: BatchNormMomentum);

    /// <summary>torchvision's _stack: the first block changes size and channels (no skip), the rest keep them.</summary>
    private static Sequential Stack(int inputChannels, int outputChannels, int kernelSize, int stride, int expansion, int repeats)
    {
        var blocks = new List<Module<Tensor, Tensor>> { new InvertedResidual(inputChannels, outputChannels, kernelSize, stride, expansion) };
        for (int i = 1; i < repeats; i++) blocks.Add(new InvertedResidual(outputChannels, outputChannels, kernelSize, 1, expansion));
        return Sequential(blocks);
    }

    /// <summary>Pointwise expansion, depthwise convolution, linear pointwise projection; a skip where the shape is kept.</summary>
    private sealed class InvertedResidual : Module<Tensor, Tensor>
    {
        private readonly Sequential layers;
        private readonly bool _residual;

        public InvertedResidual(int inputChannels, int outputChannels, int kernelSize, int stride, int expansion) : base(nameof(InvertedResidual))
        {
            int middle = inputChannels * expansion;
            _residual = inputChannels == outputChannels && stride == 1;
            layers = Sequential(
                Conv2d(inputChannels, middle, kernel_size: 1, bias: false),
                Norm(middle),
                ReLU(inplace: true),
                Conv2d(middle, middle, kernel_size: kernelSize, padding: kernelSize / 2, stride: stride, groups: middle, bias: false),
                Norm(middle),
                ReLU(inplace: true),
                Conv2d(middle, outputChannels, kernel_size: 1, bias: false),
                Norm(outputChannels));
            RegisterComponents();
        }

        public override Tensor forward(Tensor input)
        {
            if (!_residual) return layers.call(input);
            using var scope = NewDisposeScope();
            return (layers.call(input) + input).MoveToOuterDisposeScope();
        }
    }
}
