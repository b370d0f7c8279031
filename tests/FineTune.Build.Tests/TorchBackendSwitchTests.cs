using System.Diagnostics;
using System.Text.Json;

namespace FineTune.Build.Tests;

/// <summary>
/// -p:TorchBackend=cuda swaps the CPU libtorch for TorchSharp-cuda-linux. That package is not served to this
/// machine, so the switch is checked by evaluating the project (the package items a restore would take), never
/// by restoring.
/// </summary>
public class TorchBackendSwitchTests
{
    private static readonly string Core = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "../../../../../src/FineTune.Core/FineTune.Core.csproj"));

    [Fact]
    public void DefaultIsTheCpuLibTorch()
    {
        var packages = PackageReferences();
        Assert.Contains("libtorch-cpu-linux-x64", packages);
        Assert.DoesNotContain("TorchSharp-cuda-linux", packages);
    }

    [Fact]
    public void CudaTakesTorchSharpCudaLinuxInstead()
    {
        var packages = PackageReferences("-p:TorchBackend=cuda");
        Assert.Contains("TorchSharp-cuda-linux", packages);
        Assert.DoesNotContain("libtorch-cpu-linux-x64", packages);
        Assert.Contains("TorchSharp", packages);
    }

    [Fact]
    public void AnyOtherBackendIsABuildError()
    {
        var (exit, output) = Dotnet("msbuild", Core, "-t:CheckTorchBackend", "-p:TorchBackend=tpu", "-nologo");
        Assert.NotEqual(0, exit);
        Assert.Contains("TorchBackend must be cpu or cuda, not 'tpu'", output);
    }

    private static List<string> PackageReferences(params string[] properties)
    {
        var (exit, output) = Dotnet(["msbuild", Core, "-getItem:PackageReference", .. properties]);
        Assert.True(exit == 0, output);
        return JsonDocument.Parse(output).RootElement.GetProperty("Items").GetProperty("PackageReference").EnumerateArray()
            .Select(i => i.GetProperty("Identity").GetString()!).ToList();
    }

    private static (int ExitCode, string Output) Dotnet(params string[] arguments)
    {
        var result = ProcessRunner.Run("dotnet", arguments);
        return (result.ExitCode, result.Output + result.Error);
    }
}
