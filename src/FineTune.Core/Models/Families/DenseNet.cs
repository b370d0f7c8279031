using FineTune.Core.Export;
using FineTune.Core.Weights;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace FineTune.Core.Models.Families;

/// <summary>
/// torchvision's DenseNet (TorchVision .NET has none), with its module and parameter names so that
/// torchvision checkpoints load unchanged.
/// </summary>
public sealed class DenseNet : Module<Tensor, Tensor>
{
    private readonly Sequential features;
    private readonly Module<Tensor, Tensor> classifier;

    private DenseNet(int growthRate, IReadOnlyList<int> blockConfig, int initialFeatures, int bottleneckSize, double dropRate, int numClasses)
        : base(nameof(DenseNet))
    {
        var layers = new List<(string, Module<Tensor, Tensor>)>
        {
            ("conv0", Conv2d(3, initialFeatures, kernel_size: 7, stride: 2, padding: 3, bias: false)),
            ("norm0", BatchNorm2d(initialFeatures)),
            ("relu0", ReLU(inplace: true)),
            ("pool0", MaxPool2d(kernel_size: 3, stride: 2, padding: 1)),
        };
        int channels = initialFeatures;
        for (int i = 0; i < blockConfig.Count; i++)
        {
            layers.Add(($"denseblock{i + 1}", new DenseBlock(blockConfig[i], channels, bottleneckSize, growthRate, dropRate)));
            channels += blockConfig[i] * growthRate;
            if (i == blockConfig.Count - 1) continue;
            layers.Add(($"transition{i + 1}", new Transition(channels)));
            channels /= 2;
        }
        layers.Add(("norm5", BatchNorm2d(channels)));
        features = Sequential(layers);
        classifier = Linear(channels, numClasses);
        RegisterComponents();

        // torchvision's initialisation, so a fresh model trains like theirs.
        foreach (var module in modules())
        {
            switch (module)
            {
                case Conv2d conv: init.kaiming_normal_(conv.weight); break;
                case BatchNorm2d norm: init.constant_(norm.weight, 1); init.constant_(norm.bias, 0); break;
                case Linear linear: init.constant_(linear.bias, 0); break;
            }
        }
    }

    public static DenseNet Create(int growthRate, IReadOnlyList<int> blockConfig, int initialFeatures,
        int bottleneckSize = 4, double dropRate = 0, int numClasses = 1000) =>
        new(growthRate, blockConfig, initialFeatures, bottleneckSize, dropRate, numClasses);

    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var x = functional.relu(features.call(input));
        x = functional.adaptive_avg_pool2d(x, [1, 1]).flatten(1);
        return classifier.call(x).MoveToOuterDisposeScope();
    }

    internal sealed class DenseBlock : Module<Tensor, Tensor>
    {
        private readonly List<DenseLayer> _layers = [];

        public DenseBlock(int layerCount, int inputChannels, int bottleneckSize, int growthRate, double dropRate)
            : base(nameof(DenseBlock))
        {
            for (int i = 0; i < layerCount; i++)
            {
                var layer = new DenseLayer(inputChannels + i * growthRate, growthRate, bottleneckSize, dropRate);
                _layers.Add(layer);
                register_module($"denselayer{i + 1}", layer);
            }
        }

        public override Tensor forward(Tensor input)
        {
            using var scope = NewDisposeScope();
            var collected = new List<Tensor> { input };
            foreach (var layer in _layers)
                collected.Add(layer.call(cat(collected, 1)));
            return cat(collected, 1).MoveToOuterDisposeScope();
        }
    }

    /// <summary>
    /// torchvision's _Transition (norm, relu, conv, pool) pooling before its 1×1 convolution: the two are linear and
    /// commute, and the convolution then runs on a quarter of the pixels.
    /// </summary>
    internal sealed class Transition : Module<Tensor, Tensor>
    {
        private readonly Module<Tensor, Tensor> norm;
        private readonly Module<Tensor, Tensor> relu;
        private readonly Conv2d conv;
        private readonly Module<Tensor, Tensor> pool;

        public Transition(int inputChannels) : base(nameof(Transition))
        {
            norm = BatchNorm2d(inputChannels);
            relu = ReLU(inplace: true);
            conv = Conv2d(inputChannels, inputChannels / 2, kernel_size: 1, stride: 1, bias: false);
            pool = AvgPool2d(kernel_size: 2, stride: 2);
            RegisterComponents();
        }

        public override Tensor forward(Tensor input)
        {
            using var scope = NewDisposeScope();
            return conv.call(pool.call(relu.call(norm.call(input)))).MoveToOuterDisposeScope();
        }
    }

    internal sealed class DenseLayer : Module<Tensor, Tensor>
    {
        private readonly BatchNorm2d norm1;
        private readonly Module<Tensor, Tensor> relu1;
        private readonly Conv2d conv1;
        // Not a BatchNorm2d field: inference fusion folds it into conv1 and puts an identity in its place.
        private readonly Module<Tensor, Tensor> norm2;
        private readonly Module<Tensor, Tensor> relu2;
        private readonly Conv2d conv2;
        private readonly double _dropRate;

        public DenseLayer(int inputChannels, int growthRate, int bottleneckSize, double dropRate) : base(nameof(DenseLayer))
        {
            norm1 = BatchNorm2d(inputChannels);
            relu1 = ReLU(inplace: true);
            conv1 = Conv2d(inputChannels, bottleneckSize * growthRate, kernel_size: 1, stride: 1, bias: false);
            norm2 = BatchNorm2d(bottleneckSize * growthRate);
            relu2 = ReLU(inplace: true);
            conv2 = Conv2d(bottleneckSize * growthRate, growthRate, kernel_size: 3, stride: 1, padding: 1, bias: false);
            _dropRate = dropRate;
            RegisterComponents();
        }

        /// <param name="input">the block input and all earlier layers' outputs, concatenated on channels</param>
        public override Tensor forward(Tensor input)
        {
            using var scope = NewDisposeScope();
            var bottleneck = conv1.call(relu1.call(norm1.call(input)));
            var output = conv2.call(relu2.call(norm2.call(bottleneck)));
            if (_dropRate > 0) output = functional.dropout(output, _dropRate, training);
            return output.MoveToOuterDisposeScope();
        }
    }
}

/// <summary>torchvision's DenseNet (<c>models/densenet.py</c>), built by <see cref="DenseNet"/>: stages features.N for <c>last:N</c>.</summary>
/// <remarks>Weights tables: <c>tests/FineTune.Core.Tests/Reference/weights_table.py csharp densenet121 densenet161 densenet169 densenet201</c>.</remarks>
internal static class DenseNetFamily
{
    public static ModelArchitecture Architecture { get; } = new("DenseNet",
    [
        new("densenet121", () => DenseNet.Create(32, [6, 12, 24, 16], 64), "classifier", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/densenet121-a639ec97.pth", Preprocessing.ImageNet(256, 224), 1000, 7978856),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
        new("densenet161", () => DenseNet.Create(48, [6, 12, 36, 24], 96), "classifier", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/densenet161-8d451a50.pth", Preprocessing.ImageNet(256, 224), 1000, 28681000),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
        new("densenet169", () => DenseNet.Create(32, [6, 12, 32, 32], 64), "classifier", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/densenet169-b2777c0a.pth", Preprocessing.ImageNet(256, 224), 1000, 14149480),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
        new("densenet201", () => DenseNet.Create(32, [6, 12, 48, 32], 64), "classifier", Preprocessing.ImageNet())
        {
            Weights =
            [
                new("IMAGENET1K_V1", "https://download.pytorch.org/models/densenet201-c1103571.pth", Preprocessing.ImageNet(256, 224), 1000, 20013928),
            ],
            DefaultWeights = "IMAGENET1K_V1",
        },
    ])
    {
        ForwardSteps = new Dictionary<string, ForwardStep[]>
        {
            [nameof(DenseNet)] = ["features", ForwardStep.Op(x => nn.functional.relu(x)), ForwardStep.Op(x => nn.functional.adaptive_avg_pool2d(x, [1, 1])), ForwardStep.Flatten, "classifier"],
        },
        OnnxForwards = new Dictionary<string, OnnxForward>
        {
            [nameof(DenseNet)] = (w, m, path, x) => w.Child(m, path, "classifier", w.Flatten(path, w.AdaptiveAvgPool(path, w.Relu(path, w.Child(m, path, "features", x)), [1, 1]))),
            // Each layer sees the block input and all earlier layers' outputs, concatenated on channels.
            [nameof(DenseNet.DenseBlock)] = (w, m, path, x) =>
            {
                var collected = new List<OnnxValue> { x };
                foreach (var (name, layer) in m.named_children())
                    collected.Add(w.Write(layer, OnnxModuleWriter.Join(path, name), w.Concat(path, collected)));
                return w.Concat(path, collected);
            },
            [nameof(DenseNet.DenseLayer)] = (w, m, path, x) => w.Children(m, path, x, "norm1", "relu1", "conv1", "norm2", "relu2", "conv2"),
            [nameof(DenseNet.Transition)] = (w, m, path, x) => w.Children(m, path, x, "norm", "relu", "pool", "conv"),
        },
        FusionPairs = new Dictionary<string, (string Conv, string Norm)[]>
        {
            [nameof(DenseNet.DenseLayer)] = [("conv1", "norm2")],
        },
    };
}
