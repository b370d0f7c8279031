using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace FineTune.Core.Models;

/// <summary>
/// torchvision 0.14's ConvNeXt (models/convnext.py) with its module and parameter names, so torchvision checkpoints
/// load unchanged: features = [stem, stage 1, downsample, stage 2, downsample, stage 3, downsample, stage 4],
/// then average pooling and classifier = [LayerNorm2d, Flatten, Linear].
/// </summary>
public sealed class ConvNeXt : Module<Tensor, Tensor>
{
    /// <summary>One stage: its blocks' channels, the next stage's (null for the last) and how many blocks.</summary>
    private sealed record StageConfig(long InputChannels, long? OutputChannels, int Blocks);

    /// <summary>torchvision's builders: (name, stages, stochastic depth probability at the last block).</summary>
    private static readonly (string Name, StageConfig[] Stages, double StochasticDepth)[] Configs =
    [
        ("convnext_tiny", [new(96, 192, 3), new(192, 384, 3), new(384, 768, 9), new(768, null, 3)], 0.1),
        ("convnext_small", [new(96, 192, 3), new(192, 384, 3), new(384, 768, 27), new(768, null, 3)], 0.4),
        ("convnext_base", [new(128, 256, 3), new(256, 512, 3), new(512, 1024, 27), new(1024, null, 3)], 0.5),
        ("convnext_large", [new(192, 384, 3), new(384, 768, 3), new(768, 1536, 27), new(1536, null, 3)], 0.5),
    ];

    private const double NormEps = 1e-6;

    private readonly Sequential features;
    private readonly Module<Tensor, Tensor> avgpool;
    private readonly Sequential classifier;

    /// <summary>torchvision's ConvNeXt builders by name, smallest first.</summary>
    public static IReadOnlyList<(string Name, Func<Module<Tensor, Tensor>> Create)> Builders { get; } =
        Configs.Select(c => (c.Name, (Func<Module<Tensor, Tensor>>)(() => new ConvNeXt(c.Stages, c.StochasticDepth, 1000)))).ToArray();

    private ConvNeXt(StageConfig[] stages, double stochasticDepth, long numClasses, double layerScale = 1e-6) : base(nameof(ConvNeXt))
    {
        var layers = new List<Module<Tensor, Tensor>>
        {
            TorchvisionOps.ConvNormActivation(3, stages[0].InputChannels, 4, new LayerNorm2d(stages[0].InputChannels, NormEps), null, stride: 4, bias: true, padding: 0),
        };
        int totalBlocks = stages.Sum(s => s.Blocks), blockId = 0;
        foreach (var stage in stages)
        {
            var blocks = new List<Module<Tensor, Tensor>>();
            for (int i = 0; i < stage.Blocks; i++, blockId++)
                blocks.Add(new CNBlock(stage.InputChannels, layerScale, stochasticDepth * blockId / (totalBlocks - 1.0)));
            layers.Add(Sequential(blocks));
            if (stage.OutputChannels is long next)
                layers.Add(Sequential(new LayerNorm2d(stage.InputChannels, NormEps), Conv2d(stage.InputChannels, next, 2, stride: 2)));
        }
        features = Sequential(layers);
        avgpool = AdaptiveAvgPool2d(1);
        long lastChannels = stages[^1].OutputChannels ?? stages[^1].InputChannels;
        classifier = Sequential(new LayerNorm2d(lastChannels, NormEps), Flatten(1), Linear(lastChannels, numClasses));
        RegisterComponents();

        // torchvision's initialisation, so a fresh model trains like theirs; TorchSharp 0.107's native trunc_normal_ swaps
        // mean and std and gives NaN (0·∞) at the draw's bounds, hence PyTorch's computation.
        using var noGrad = no_grad();
        foreach (var module in modules())
        {
            switch (module)
            {
                case Conv2d conv: TransformerParts.TruncatedNormal(conv.weight, 0.02); conv.bias?.zero_(); break;
                case Linear linear: TransformerParts.TruncatedNormal(linear.weight, 0.02); linear.bias?.zero_(); break;
            }
        }
    }

    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        return classifier.call(avgpool.call(features.call(input))).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// A depthwise 7×7 convolution, then (channels last) LayerNorm, Linear to 4× the channels, GELU, Linear back;
    /// scaled per channel by layer_scale and added to the input, the branch dropped by stochastic depth while training.
    /// </summary>
    private sealed class CNBlock : Module<Tensor, Tensor>
    {
        private readonly Sequential block;
        private readonly Parameter layer_scale;
        private readonly Module<Tensor, Tensor> stochastic_depth;

        public CNBlock(long dim, double layerScale, double stochasticDepth) : base(nameof(CNBlock))
        {
            block = Sequential(
                Conv2d(dim, dim, 7, padding: 3, groups: dim, bias: true),
                new Permute(0, 2, 3, 1),
                LayerNorm(dim, NormEps),
                Linear(dim, 4 * dim),
                GELU(),
                Linear(4 * dim, dim),
                new Permute(0, 3, 1, 2));
            layer_scale = new Parameter(ones(dim, 1, 1) * layerScale);
            stochastic_depth = new StochasticDepth(stochasticDepth);
            RegisterComponents();
        }

        public override Tensor forward(Tensor input)
        {
            using var scope = NewDisposeScope();
            var result = stochastic_depth.call(layer_scale * block.call(input));
            return result.add_(input).MoveToOuterDisposeScope();
        }
    }
}
