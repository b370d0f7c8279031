using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace FineTune.Core.Models;

/// <summary>
/// torchvision 0.14's EfficientNet v1 (B0–B7) and v2 (S, M, L) (models/efficientnet.py) with its module and parameter
/// names, so torchvision checkpoints load unchanged: features = [stem, one Sequential of MBConv/FusedMBConv blocks per
/// stage, 1×1 head convolution], then average pooling and classifier = [Dropout, Linear]. Every activation is SiLU,
/// the squeeze-excitation's included, as in torchvision.
/// </summary>
public sealed class EfficientNet : Module<Tensor, Tensor>
{
    /// <summary>One stage of torchvision's inverted_residual_setting, channels and depth already scaled.</summary>
    private sealed record StageConfig(bool Fused, double ExpandRatio, long Kernel, long Stride, long InputChannels, long OutputChannels, int Blocks);

    /// <summary>How torchvision builds one builder: its stages, head width, dropout and BatchNorm settings.</summary>
    private sealed record Config(string Name, StageConfig[] Stages, long? LastChannel, double Dropout, double NormEps, double NormMomentum);

    private const double StochasticDepthProbability = 0.2;

    private static readonly Config[] Configs =
    [
        V1("efficientnet_b0", 1.0, 1.0, 0.2),
        V1("efficientnet_b1", 1.0, 1.1, 0.2),
        V1("efficientnet_b2", 1.1, 1.2, 0.3),
        V1("efficientnet_b3", 1.2, 1.4, 0.3),
        V1("efficientnet_b4", 1.4, 1.8, 0.4),
        // torchvision's B5–B7 ports TensorFlow's weights, whose BatchNorms have TensorFlow's epsilon and momentum.
        V1("efficientnet_b5", 1.6, 2.2, 0.4, 1e-3, 0.01),
        V1("efficientnet_b6", 1.8, 2.6, 0.5, 1e-3, 0.01),
        V1("efficientnet_b7", 2.0, 3.1, 0.5, 1e-3, 0.01),
        new("efficientnet_v2_s",
        [
            Fused(1, 3, 1, 24, 24, 2), Fused(4, 3, 2, 24, 48, 4), Fused(4, 3, 2, 48, 64, 4),
            MB(4, 3, 2, 64, 128, 6), MB(6, 3, 1, 128, 160, 9), MB(6, 3, 2, 160, 256, 15),
        ], 1280, 0.2, 1e-3, 0.1),
        new("efficientnet_v2_m",
        [
            Fused(1, 3, 1, 24, 24, 3), Fused(4, 3, 2, 24, 48, 5), Fused(4, 3, 2, 48, 80, 5),
            MB(4, 3, 2, 80, 160, 7), MB(6, 3, 1, 160, 176, 14), MB(6, 3, 2, 176, 304, 18), MB(6, 3, 1, 304, 512, 5),
        ], 1280, 0.3, 1e-3, 0.1),
        new("efficientnet_v2_l",
        [
            Fused(1, 3, 1, 32, 32, 4), Fused(4, 3, 2, 32, 64, 7), Fused(4, 3, 2, 64, 96, 7),
            MB(4, 3, 2, 96, 192, 10), MB(6, 3, 1, 192, 224, 19), MB(6, 3, 2, 224, 384, 25), MB(6, 3, 1, 384, 640, 7),
        ], 1280, 0.4, 1e-3, 0.1),
    ];

    private readonly Sequential features;
    private readonly Module<Tensor, Tensor> avgpool;
    private readonly Sequential classifier;

    /// <summary>torchvision's EfficientNet builders by name, v1 then v2, smallest first.</summary>
    public static IReadOnlyList<(string Name, Func<Module<Tensor, Tensor>> Create)> Builders { get; } =
        Configs.Select(c => (c.Name, (Func<Module<Tensor, Tensor>>)(() => new EfficientNet(c, 1000)))).ToArray();

    /// <summary>B0's stages scaled as torchvision's MBConvConfig scales them: widths to multiples of 8, depths rounded up.</summary>
    private static Config V1(string name, double widthMult, double depthMult, double dropout, double normEps = 1e-5, double normMomentum = 0.1)
    {
        StageConfig Scaled(double expand, long kernel, long stride, long input, long output, int blocks) =>
            MB(expand, kernel, stride, MakeDivisible(input * widthMult), MakeDivisible(output * widthMult), (int)Math.Ceiling(blocks * depthMult));
        return new(name,
        [
            Scaled(1, 3, 1, 32, 16, 1), Scaled(6, 3, 2, 16, 24, 2), Scaled(6, 5, 2, 24, 40, 2), Scaled(6, 3, 2, 40, 80, 3),
            Scaled(6, 5, 1, 80, 112, 3), Scaled(6, 5, 2, 112, 192, 4), Scaled(6, 3, 1, 192, 320, 1),
        ], null, dropout, normEps, normMomentum);
    }

    private static StageConfig MB(double expand, long kernel, long stride, long input, long output, int blocks) =>
        new(false, expand, kernel, stride, input, output, blocks);

    private static StageConfig Fused(double expand, long kernel, long stride, long input, long output, int blocks) =>
        new(true, expand, kernel, stride, input, output, blocks);

    /// <summary>torchvision's _make_divisible(v, 8): the nearest multiple of 8, at least 8, never 10% below v.</summary>
    private static long MakeDivisible(double value)
    {
        const int divisor = 8;
        long rounded = Math.Max(divisor, (long)(value + divisor / 2.0) / divisor * divisor);
        return rounded < 0.9 * value ? rounded + divisor : rounded;
    }

    private EfficientNet(Config config, long numClasses) : base(nameof(EfficientNet))
    {
        Module<Tensor, Tensor> Norm(long channels) => BatchNorm2d(channels, config.NormEps, config.NormMomentum);

        var stages = config.Stages;
        var layers = new List<Module<Tensor, Tensor>>
        {
            TorchvisionOps.ConvNormActivation(3, stages[0].InputChannels, 3, Norm(stages[0].InputChannels), SiLU(), stride: 2),
        };
        int totalBlocks = stages.Sum(s => s.Blocks), blockId = 0;
        foreach (var stage in stages)
        {
            var blocks = new List<Module<Tensor, Tensor>>();
            for (int i = 0; i < stage.Blocks; i++, blockId++)
            {
                var block = i == 0 ? stage : stage with { InputChannels = stage.OutputChannels, Stride = 1 };
                double stochasticDepth = StochasticDepthProbability * blockId / totalBlocks;
                blocks.Add(block.Fused ? new FusedMBConv(block, stochasticDepth, Norm) : new MBConv(block, stochasticDepth, Norm));
            }
            layers.Add(Sequential(blocks));
        }
        long lastInput = stages[^1].OutputChannels, lastOutput = config.LastChannel ?? 4 * lastInput;
        layers.Add(TorchvisionOps.ConvNormActivation(lastInput, lastOutput, 1, Norm(lastOutput), SiLU()));
        features = Sequential(layers);
        avgpool = AdaptiveAvgPool2d(1);
        classifier = Sequential(Dropout(config.Dropout, inplace: true), Linear(lastOutput, numClasses));
        RegisterComponents();

        // torchvision's initialisation, so a fresh model trains like theirs.
        using var noGrad = no_grad();
        foreach (var module in modules())
        {
            switch (module)
            {
                case Conv2d conv: init.kaiming_normal_(conv.weight, mode: init.FanInOut.FanOut); conv.bias?.zero_(); break;
                case Linear linear:
                    double range = 1 / Math.Sqrt(linear.out_features);
                    init.uniform_(linear.weight, -range, range);
                    linear.bias?.zero_();
                    break;
            }
        }
    }

    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        return classifier.call(avgpool.call(features.call(input)).flatten(1)).MoveToOuterDisposeScope();
    }

    /// <summary>torchvision's channel count for an expansion: the input's times the ratio, rounded to a multiple of 8.</summary>
    private static long Expanded(StageConfig block) => MakeDivisible(block.InputChannels * block.ExpandRatio);

    /// <summary>
    /// 1×1 expansion (where the ratio widens), depthwise k×k, squeeze-excitation to a quarter of the block's input
    /// channels, 1×1 projection; the input is added when the shape stays.
    /// </summary>
    private sealed class MBConv : Module<Tensor, Tensor>
    {
        private readonly Sequential block;
        private readonly Module<Tensor, Tensor> stochastic_depth;
        private readonly bool _residual;

        public MBConv(StageConfig config, double stochasticDepth, Func<long, Module<Tensor, Tensor>> norm) : base(nameof(MBConv))
        {
            long expanded = Expanded(config);
            var layers = new List<Module<Tensor, Tensor>>();
            if (expanded != config.InputChannels)
                layers.Add(TorchvisionOps.ConvNormActivation(config.InputChannels, expanded, 1, norm(expanded), SiLU()));
            layers.Add(TorchvisionOps.ConvNormActivation(expanded, expanded, config.Kernel, norm(expanded), SiLU(), stride: config.Stride, groups: expanded));
            layers.Add(new SqueezeExcitation(expanded, Math.Max(1, config.InputChannels / 4), SiLU()));
            layers.Add(TorchvisionOps.ConvNormActivation(expanded, config.OutputChannels, 1, norm(config.OutputChannels), null));
            block = Sequential(layers);
            stochastic_depth = new StochasticDepth(stochasticDepth);
            _residual = config.Stride == 1 && config.InputChannels == config.OutputChannels;
            RegisterComponents();
        }

        public override Tensor forward(Tensor input) => Residual(block, stochastic_depth, _residual, input);
    }

    /// <summary>EfficientNetV2's early block: expansion and depthwise convolution fused into one k×k convolution, no squeeze-excitation.</summary>
    private sealed class FusedMBConv : Module<Tensor, Tensor>
    {
        private readonly Sequential block;
        private readonly Module<Tensor, Tensor> stochastic_depth;
        private readonly bool _residual;

        public FusedMBConv(StageConfig config, double stochasticDepth, Func<long, Module<Tensor, Tensor>> norm) : base(nameof(FusedMBConv))
        {
            long expanded = Expanded(config);
            block = expanded != config.InputChannels
                ? Sequential(
                    TorchvisionOps.ConvNormActivation(config.InputChannels, expanded, config.Kernel, norm(expanded), SiLU(), stride: config.Stride),
                    TorchvisionOps.ConvNormActivation(expanded, config.OutputChannels, 1, norm(config.OutputChannels), null))
                : Sequential(
                    TorchvisionOps.ConvNormActivation(config.InputChannels, config.OutputChannels, config.Kernel, norm(config.OutputChannels), SiLU(), stride: config.Stride));
            stochastic_depth = new StochasticDepth(stochasticDepth);
            _residual = config.Stride == 1 && config.InputChannels == config.OutputChannels;
            RegisterComponents();
        }

        public override Tensor forward(Tensor input) => Residual(block, stochastic_depth, _residual, input);
    }

    private static Tensor Residual(Sequential block, Module<Tensor, Tensor> stochasticDepth, bool residual, Tensor input)
    {
        using var scope = NewDisposeScope();
        var result = block.call(input);
        if (residual) result = stochasticDepth.call(result).add_(input);
        return result.MoveToOuterDisposeScope();
    }
}
