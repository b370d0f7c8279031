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
        Assert.Equal(DeviceType.CPU, TorchDevice.Resolve("cpu").type);
        Assert.Equal(DeviceType.CPU, TorchDevice.Resolve("auto").type);
        var error = Assert.Throws<DeviceUnavailableException>(() => TorchDevice.Resolve("cuda"));
        Assert.Contains("-p:TorchBackend=cuda", error.Message);
        Assert.Throws<ArgumentException>(() => TorchDevice.Resolve("tpu"));
    }
}
