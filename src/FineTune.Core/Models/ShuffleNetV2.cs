using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace FineTune.Core.Models;

/// <summary>
/// torchvision 0.14's ShuffleNet V2 (TorchVision .NET has none), with its module and parameter names so that
/// torchvision checkpoints load unchanged. Like torchvision it keeps PyTorch's default initialisation.
/// </summary>
public sealed class ShuffleNetV2 : Module<Tensor, Tensor>
{
    private readonly Sequential conv1;
    private readonly Module<Tensor, Tensor> maxpool;
    private readonly Sequential stage2;
    private readonly Sequential stage3;
    private readonly Sequential stage4;
    private readonly Sequential conv5;
    private readonly Linear fc;

    /// <summary>torchvision's builders by name.</summary>
    public static readonly IReadOnlyList<(string Name, Func<ShuffleNetV2> Create)> Builders =
    [
        ("shufflenet_v2_x0_5", () => Create([24, 48, 96, 192, 1024])),
        ("shufflenet_v2_x1_0", () => Create([24, 116, 232, 464, 1024])),
        ("shufflenet_v2_x1_5", () => Create([24, 176, 352, 704, 1024])),
        ("shufflenet_v2_x2_0", () => Create([24, 244, 488, 976, 2048])),
    ];

    /// <summary>Blocks in stage2, stage3 and stage4 of every torchvision builder.</summary>
    private static readonly int[] StageRepeats = [4, 8, 4];

    private ShuffleNetV2(IReadOnlyList<int> stageOutputChannels, int numClasses) : base(nameof(ShuffleNetV2))
    {
        int channels = stageOutputChannels[0];
        conv1 = Sequential(
            Conv2d(3, channels, kernel_size: 3, stride: 2, padding: 1, bias: false),
            BatchNorm2d(channels),
            ReLU(inplace: true));
        maxpool = MaxPool2d(kernel_size: 3, stride: 2, padding: 1);
        var stages = new Sequential[3];
        for (int s = 0; s < 3; s++)
        {
            int output = stageOutputChannels[s + 1];
            var blocks = new List<Module<Tensor, Tensor>> { new InvertedResidual(channels, output, stride: 2) };
            for (int i = 1; i < StageRepeats[s]; i++) blocks.Add(new InvertedResidual(output, output, stride: 1));
            stages[s] = Sequential(blocks);
            channels = output;
        }
        (stage2, stage3, stage4) = (stages[0], stages[1], stages[2]);
        conv5 = Sequential(
            Conv2d(channels, stageOutputChannels[4], kernel_size: 1, bias: false),
            BatchNorm2d(stageOutputChannels[4]),
            ReLU(inplace: true));
        fc = Linear(stageOutputChannels[4], numClasses);
        RegisterComponents();
    }

    /// <param name="stageOutputChannels">conv1's, stage2's, stage3's, stage4's and conv5's output channels</param>
    public static ShuffleNetV2 Create(IReadOnlyList<int> stageOutputChannels, int numClasses = 1000) =>
        stageOutputChannels.Count == 5 ? new(stageOutputChannels, numClasses)
            : throw new ArgumentException("ShuffleNet V2 needs 5 output channel counts", nameof(stageOutputChannels));

    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var x = maxpool.call(conv1.call(input));
        x = conv5.call(stage4.call(stage3.call(stage2.call(x))));
        return fc.call(x.mean([2, 3])).MoveToOuterDisposeScope();
    }

    /// <summary>Interleaves the channels of <paramref name="groups"/> groups (torchvision's channel_shuffle: view, transpose, view).</summary>
    public static Tensor ChannelShuffle(Tensor x, int groups)
    {
        long batch = x.shape[0], channels = x.shape[1], height = x.shape[2], width = x.shape[3];
        using var grouped = x.view(batch, groups, channels / groups, height, width);
        using var transposed = grouped.transpose(1, 2).contiguous();
        return transposed.view(batch, -1, height, width);
    }

    /// <summary>
    /// A stride-1 block passes half its channels through and transforms the other half; a stride-2 block
    /// transforms all of them twice (branch1, branch2). Either way the halves are concatenated and shuffled.
    /// </summary>
    private sealed class InvertedResidual : Module<Tensor, Tensor>
    {
        // torchvision's stride-1 branch1 is an empty Sequential: nothing to register, so no field.
        private readonly Sequential? branch1;
        private readonly Sequential branch2;

        public InvertedResidual(int inputChannels, int outputChannels, int stride) : base(nameof(InvertedResidual))
        {
            int branchChannels = outputChannels / 2;
            if (stride == 1 && inputChannels != branchChannels << 1)
                throw new ArgumentException($"a stride-1 block needs {branchChannels << 1} input channels, not {inputChannels}");
            if (stride > 1)
            {
                branch1 = Sequential(
                    Depthwise(inputChannels, stride),
                    BatchNorm2d(inputChannels),
                    Conv2d(inputChannels, branchChannels, kernel_size: 1, bias: false),
                    BatchNorm2d(branchChannels),
                    ReLU(inplace: true));
            }
            branch2 = Sequential(
                Conv2d(stride > 1 ? inputChannels : branchChannels, branchChannels, kernel_size: 1, bias: false),
                BatchNorm2d(branchChannels),
                ReLU(inplace: true),
                Depthwise(branchChannels, stride),
                BatchNorm2d(branchChannels),
                Conv2d(branchChannels, branchChannels, kernel_size: 1, bias: false),
                BatchNorm2d(branchChannels),
                ReLU(inplace: true));
            RegisterComponents();
        }

        private static Conv2d Depthwise(int channels, int stride) =>
            Conv2d(channels, channels, kernel_size: 3, stride: stride, padding: 1, groups: channels, bias: false);

        public override Tensor forward(Tensor input)
        {
            using var scope = NewDisposeScope();
            Tensor joined;
            if (branch1 is null)
            {
                var halves = input.chunk(2, 1);
                joined = cat([halves[0], branch2.call(halves[1])], 1);
            }
            else
            {
                joined = cat([branch1.call(input), branch2.call(input)], 1);
            }
            return ChannelShuffle(joined, 2).MoveToOuterDisposeScope();
        }
    }
}
