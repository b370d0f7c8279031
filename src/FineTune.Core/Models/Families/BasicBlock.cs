using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace FineTune.Core.Models.Families;

/// <summary>
/// torchvision's ResNet BasicBlock, for ResNet layouts TorchVision .NET does not build itself (its own
/// block is internal): plugged into its public ResNet constructor, names stay torchvision's.
/// </summary>
internal sealed class BasicBlock : Module<Tensor, Tensor>
{
    private readonly Module<Tensor, Tensor> conv1;
    private readonly Module<Tensor, Tensor> bn1;
    private readonly Module<Tensor, Tensor> relu;
    private readonly Module<Tensor, Tensor> conv2;
    private readonly Module<Tensor, Tensor> bn2;
    private readonly Module<Tensor, Tensor>? downsample;

    private BasicBlock(int inPlanes, int planes, int stride, Module<Tensor, Tensor>? downsample, Func<int, Module<Tensor, Tensor>> norm)
        : base(nameof(BasicBlock))
    {
        conv1 = Conv2d(inPlanes, planes, kernel_size: 3, stride: stride, padding: 1, bias: false);
        bn1 = norm(planes);
        relu = ReLU(inplace: true);
        conv2 = Conv2d(planes, planes, kernel_size: 3, stride: 1, padding: 1, bias: false);
        bn2 = norm(planes);
        this.downsample = downsample;
        RegisterComponents();
    }

    public static readonly ResNet.BlockFunc Create = (inPlanes, planes, stride, downsample, _, _, _, norm) =>
        new BasicBlock(inPlanes, planes, stride, downsample, norm ?? (channels => BatchNorm2d(channels)));

    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var output = bn2.call(conv2.call(relu.call(bn1.call(conv1.call(input)))));
        var identity = downsample is null ? input : downsample.call(input);
        return relu.call(output.add_(identity)).MoveToOuterDisposeScope();
    }
}
