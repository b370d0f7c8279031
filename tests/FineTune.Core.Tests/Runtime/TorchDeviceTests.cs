using FineTune.Core.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTune.Core.Tests.Runtime;

public class TorchDeviceTests
{
    [Fact]
    public void CpuBuildResolvesAutoToTheCpuAndRefusesCuda()
    {
        Assert.False(cuda.is_available(), "this test describes the CPU build");
        Assert.Equal(DeviceType.CPU, TorchDevice.Resolve(DeviceKind.Cpu).type);
        Assert.Equal(DeviceType.CPU, TorchDevice.Resolve(DeviceKind.Auto).type);
        var error = Assert.Throws<DeviceUnavailableException>(() => TorchDevice.Resolve(DeviceKind.Cuda));
        Assert.Contains("-p:TorchBackend=cuda", error.Message);
        Assert.Equal(DeviceKind.Cuda, TorchDevice.Choices.Parse("cuda"));
        Assert.Throws<FormatException>(() => TorchDevice.Choices.Parse("tpu"));
    }
}
