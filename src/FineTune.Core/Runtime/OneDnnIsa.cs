using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace FineTune.Core.Runtime;

/// <summary>
/// On an AMD EPYC with AVX-512 (the 2-core machines this was built on since 2026-12-05), libtorch 2.10's oneDNN
/// float32 convolutions through its AVX-512 kernels gave wrong numbers: a batch-norm-folded resnet18 differed from the
/// unfolded one by 0.73 on features of 3.1 (float64: 1.5e-14), predict's probabilities differed from PyTorch 1.13's by
/// up to 0.03, and densenet121's training died of SIGFPE. Capped at AVX2 (oneDNN's <c>ONEDNN_MAX_CPU_ISA</c>) all of
/// them agree again. So on AMD processors with AVX-512 the cap is set before libtorch makes its first oneDNN
/// primitive, unless the user set the variable themselves.
/// </summary>
internal static partial class OneDnnIsa
{
    private const string Variable = "ONEDNN_MAX_CPU_ISA";

    // A library's module initializer (CA2255): the cap must be in the native environment before any code of this
    // assembly reaches libtorch, whichever host (CLI, Functions, tests) loads it.
#pragma warning disable CA2255
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void CapOnAmdAvx512()
    {
        if (!OperatingSystem.IsLinux() || Environment.GetEnvironmentVariable(Variable) is not null || !IsAmdWithAvx512()) return;
        // Environment.SetEnvironmentVariable changes .NET's copy only; oneDNN reads the C library's.
        if (SetEnv(Variable, "AVX2", overwrite: 0) == 0) Environment.SetEnvironmentVariable(Variable, "AVX2");
    }

    private static bool IsAmdWithAvx512()
    {
        try
        {
            bool amd = false;
            foreach (string line in File.ReadLines("/proc/cpuinfo"))
            {
                if (line.StartsWith("vendor_id", StringComparison.Ordinal)) amd = line.EndsWith("AuthenticAMD", StringComparison.Ordinal);
                else if (line.StartsWith("flags", StringComparison.Ordinal)) return amd && line.Contains(" avx512f", StringComparison.Ordinal);
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
        return false;
    }

    [LibraryImport("libc", EntryPoint = "setenv", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int SetEnv(string name, string value, int overwrite);
}
