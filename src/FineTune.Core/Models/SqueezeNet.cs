using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace FineTune.Core.Models;

/// <summary>
/// torchvision 0.14's SqueezeNet 1.0 and 1.1 (TorchVision .NET has none), with its module and parameter names so
/// that torchvision checkpoints load unchanged. Its classifier is a 1×1 convolution (<c>classifier.1</c>) followed by
/// ReLU and global average pooling, not a Linear layer.
/// </summary>
public sealed class SqueezeNet : Module<Tensor, Tensor>
{
    private readonly Sequential features;
    private readonly Sequential classifier;

    /// <summary>torchvision's builders by name.</summary>
    public static readonly IReadOnlyList<(string Name, Func<SqueezeNet> Create)> Builders =
    [
        ("squeezenet1_0", () => Create("1_0")),
        ("squeezenet1_1", () => Create("1_1")),
    ];

    private SqueezeNet(Sequential features, int numClasses, double dropout) : base(nameof(SqueezeNet))
    {
        this.features = features;
        var finalConv = Conv2d(512, numClasses, kernel_size: 1);
        classifier = Sequential(Dropout(dropout), finalConv, ReLU(inplace: true), AdaptiveAvgPool2d(1));
        RegisterComponents();

        // torchvision's initialisation, so a fresh model trains like theirs.
        foreach (var module in modules())
        {
            if (module is not Conv2d conv) continue;
            if (ReferenceEquals(conv, finalConv)) init.normal_(conv.weight, mean: 0.0, std: 0.01);
            else init.kaiming_uniform_(conv.weight);
            if (conv.bias is not null) init.constant_(conv.bias, 0);
        }
    }

    /// <param name="version">torchvision's: "1_0" (the paper's) or "1_1" (2.4× less computation, same accuracy)</param>
    public static SqueezeNet Create(string version, int numClasses = 1000, double dropout = 0.5) => version switch
    {
        "1_0" => new(Version10Features(), numClasses, dropout),
        "1_1" => new(Version11Features(), numClasses, dropout),
        _ => throw new ArgumentException($"SqueezeNet version '{version}': 1_0 or 1_1 expected", nameof(version)),
    };

    private static Sequential Version10Features() => Sequential(
        Conv2d(3, 96, kernel_size: 7, stride: 2),
        ReLU(inplace: true),
        MaxPool2d(kernel_size: 3, stride: 2, ceil_mode: true),
        new Fire(96, 16, 64, 64),
        new Fire(128, 16, 64, 64),
        new Fire(128, 32, 128, 128),
        MaxPool2d(kernel_size: 3, stride: 2, ceil_mode: true),
        new Fire(256, 32, 128, 128),
        new Fire(256, 48, 192, 192),
        new Fire(384, 48, 192, 192),
        new Fire(384, 64, 256, 256),
        MaxPool2d(kernel_size: 3, stride: 2, ceil_mode: true),
        new Fire(512, 64, 256, 256));

    private static Sequential Version11Features() => Sequential(
        Conv2d(3, 64, kernel_size: 3, stride: 2),
        ReLU(inplace: true),
        MaxPool2d(kernel_size: 3, stride: 2, ceil_mode: true),
        new Fire(64, 16, 64, 64),
        new Fire(128, 16, 64, 64),
        MaxPool2d(kernel_size: 3, stride: 2, ceil_mode: true),
        new Fire(128, 32, 128, 128),
        new Fire(256, 32, 128, 128),
        MaxPool2d(kernel_size: 3, stride: 2, ceil_mode: true),
        new Fire(256, 48, 192, 192),
        new Fire(384, 48, 192, 192),
        new Fire(384, 64, 256, 256),
        new Fire(512, 64, 256, 256));

    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        return classifier.call(features.call(input)).flatten(1).MoveToOuterDisposeScope();
    }

    /// <summary>A squeeze 1×1 convolution feeding 1×1 and 3×3 expansions, concatenated on channels.</summary>
    private sealed class Fire : Module<Tensor, Tensor>
    {
        private readonly Conv2d squeeze;
        private readonly Module<Tensor, Tensor> squeeze_activation;
        private readonly Conv2d expand1x1;
        private readonly Module<Tensor, Tensor> expand1x1_activation;
        private readonly Conv2d expand3x3;
        private readonly Module<Tensor, Tensor> expand3x3_activation;

        public Fire(int inputChannels, int squeezeChannels, int expand1x1Channels, int expand3x3Channels) : base(nameof(Fire))
        {
            squeeze = Conv2d(inputChannels, squeezeChannels, kernel_size: 1);
            squeeze_activation = ReLU(inplace: true);
            expand1x1 = Conv2d(squeezeChannels, expand1x1Channels, kernel_size: 1);
            expand1x1_activation = ReLU(inplace: true);
            expand3x3 = Conv2d(squeezeChannels, expand3x3Channels, kernel_size: 3, padding: 1);
            expand3x3_activation = ReLU(inplace: true);
            RegisterComponents();
        }

        public override Tensor forward(Tensor input)
        {
            using var scope = NewDisposeScope();
            var squeezed = squeeze_activation.call(squeeze.call(input));
            return cat([expand1x1_activation.call(expand1x1.call(squeezed)), expand3x3_activation.call(expand3x3.call(squeezed))], 1)
                .MoveToOuterDisposeScope();
        }
    }
}
