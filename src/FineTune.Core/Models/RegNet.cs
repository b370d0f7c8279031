using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace FineTune.Core.Models;

/// <summary>
/// torchvision 0.14's RegNet X and Y (models/regnet.py) with its module and parameter names, so torchvision
/// checkpoints load unchanged: stem (3×3 convolution, BatchNorm, ReLU), trunk_output = four stages "block1".."block4"
/// of residual bottleneck blocks "block{stage}-{i}", average pooling and fc. RegNetY adds a squeeze-excitation (ReLU)
/// to every block.
/// </summary>
public sealed class RegNet : Module<Tensor, Tensor>
{
    /// <summary>
    /// One builder's four stages as torchvision's BlockParams.from_init_params computes them from the paper's
    /// (depth, w_0, w_a, w_m, group width): taken from torchvision 0.14 rather than recomputed, since that quantisation
    /// runs in float32 and a rounding of our own could pick another width. The bottleneck multiplier is 1 for all.
    /// </summary>
    private sealed record Config(string Name, int[] Depths, long[] Widths, long[] GroupWidths, bool SqueezeExcitation);

    private static readonly Config[] Configs =
    [
        new("regnet_y_400mf", [1, 3, 6, 6], [48, 104, 208, 440], [8, 8, 8, 8], true),
        new("regnet_y_800mf", [1, 3, 8, 2], [64, 144, 320, 784], [16, 16, 16, 16], true),
        new("regnet_y_1_6gf", [2, 6, 17, 2], [48, 120, 336, 888], [24, 24, 24, 24], true),
        new("regnet_y_3_2gf", [2, 5, 13, 1], [72, 216, 576, 1512], [24, 24, 24, 24], true),
        new("regnet_y_8gf", [2, 4, 10, 1], [224, 448, 896, 2016], [56, 56, 56, 56], true),
        new("regnet_y_16gf", [2, 4, 11, 1], [224, 448, 1232, 3024], [112, 112, 112, 112], true),
        new("regnet_y_32gf", [2, 5, 12, 1], [232, 696, 1392, 3712], [232, 232, 232, 232], true),
        new("regnet_y_128gf", [2, 7, 17, 1], [528, 1056, 2904, 7392], [264, 264, 264, 264], true),
        new("regnet_x_400mf", [1, 2, 7, 12], [32, 64, 160, 400], [16, 16, 16, 16], false),
        new("regnet_x_800mf", [1, 3, 7, 5], [64, 128, 288, 672], [16, 16, 16, 16], false),
        new("regnet_x_1_6gf", [2, 4, 10, 2], [72, 168, 408, 912], [24, 24, 24, 24], false),
        new("regnet_x_3_2gf", [2, 6, 15, 2], [96, 192, 432, 1008], [48, 48, 48, 48], false),
        new("regnet_x_8gf", [2, 5, 15, 1], [80, 240, 720, 1920], [80, 120, 120, 120], false),
        new("regnet_x_16gf", [2, 6, 13, 1], [256, 512, 896, 2048], [128, 128, 128, 128], false),
        new("regnet_x_32gf", [2, 7, 13, 1], [336, 672, 1344, 2520], [168, 168, 168, 168], false),
    ];

    private const long StemWidth = 32;
    private const double SqueezeRatio = 0.25;

    private readonly Sequential stem;
    private readonly Sequential trunk_output;
    private readonly Module<Tensor, Tensor> avgpool;
    private readonly Module<Tensor, Tensor> fc;

    /// <summary>torchvision's RegNet builders by name: Y then X, smallest first.</summary>
    public static IReadOnlyList<(string Name, Func<Module<Tensor, Tensor>> Create)> Builders { get; } =
        Configs.Select(c => (c.Name, (Func<Module<Tensor, Tensor>>)(() => new RegNet(c, 1000)))).ToArray();

    private RegNet(Config config, long numClasses) : base(nameof(RegNet))
    {
        stem = TorchvisionOps.ConvNormActivation(3, StemWidth, 3, BatchNorm2d(StemWidth), ReLU(inplace: true), stride: 2);
        var stages = new List<(string, Module<Tensor, Tensor>)>();
        long width = StemWidth;
        for (int s = 0; s < config.Depths.Length; s++)
        {
            var blocks = new List<(string, Module<Tensor, Tensor>)>();
            for (int i = 0; i < config.Depths[s]; i++)
            {
                long squeeze = config.SqueezeExcitation ? (long)Math.Round(SqueezeRatio * (i == 0 ? width : config.Widths[s]), MidpointRounding.ToEven) : 0;
                blocks.Add(($"block{s + 1}-{i}", new ResBottleneckBlock(i == 0 ? width : config.Widths[s], config.Widths[s], i == 0 ? 2 : 1, config.GroupWidths[s], squeeze)));
            }
            stages.Add(($"block{s + 1}", Sequential(blocks)));
            width = config.Widths[s];
        }
        trunk_output = Sequential(stages);
        avgpool = AdaptiveAvgPool2d(1);
        fc = Linear(width, numClasses);
        RegisterComponents();

        // torchvision's initialisation, so a fresh model trains like theirs.
        using var noGrad = no_grad();
        foreach (var module in modules())
        {
            switch (module)
            {
                case Conv2d conv:
                    long fanOut = conv.weight.shape[2] * conv.weight.shape[3] * conv.weight.shape[0];
                    init.normal_(conv.weight, 0, Math.Sqrt(2.0 / fanOut));
                    break;
                case Linear linear: init.normal_(linear.weight, 0, 0.01); linear.bias?.zero_(); break;
            }
        }
    }

    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var x = avgpool.call(trunk_output.call(stem.call(input))).flatten(1);
        return fc.call(x).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// ReLU(proj(x) + f(x)), f = 1×1, grouped 3×3 (stride), [squeeze-excitation], 1×1; proj (1×1 convolution and
    /// BatchNorm) only where the width or the resolution changes, the identity elsewhere.
    /// </summary>
    private sealed class ResBottleneckBlock : Module<Tensor, Tensor>
    {
        private readonly Sequential? proj;
        private readonly Sequential f;
        private readonly Module<Tensor, Tensor> activation;

        /// <param name="squeezeChannels">the squeeze-excitation's width, 0 for none (RegNetX)</param>
        public ResBottleneckBlock(long widthIn, long widthOut, long stride, long groupWidth, long squeezeChannels) : base(nameof(ResBottleneckBlock))
        {
            if (widthIn != widthOut || stride != 1)
                proj = TorchvisionOps.ConvNormActivation(widthIn, widthOut, 1, BatchNorm2d(widthOut), null, stride: stride);
            var layers = new List<(string, Module<Tensor, Tensor>)>
            {
                ("a", TorchvisionOps.ConvNormActivation(widthIn, widthOut, 1, BatchNorm2d(widthOut), ReLU(inplace: true))),
                ("b", TorchvisionOps.ConvNormActivation(widthOut, widthOut, 3, BatchNorm2d(widthOut), ReLU(inplace: true), stride: stride, groups: widthOut / groupWidth)),
            };
            if (squeezeChannels > 0) layers.Add(("se", new SqueezeExcitation(widthOut, squeezeChannels, ReLU())));
            layers.Add(("c", TorchvisionOps.ConvNormActivation(widthOut, widthOut, 1, BatchNorm2d(widthOut), null)));
            f = Sequential(layers);
            activation = ReLU(inplace: true);
            RegisterComponents();
        }

        public override Tensor forward(Tensor input)
        {
            using var scope = NewDisposeScope();
            var shortcut = proj is null ? input : proj.call(input);
            return activation.call(f.call(input).add_(shortcut)).MoveToOuterDisposeScope();
        }
    }
}
