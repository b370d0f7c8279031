using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;

namespace FineTune.Core.Runtime;

/// <summary>
/// oneDNN sizes its convolution blocking from the caches CPUID reports. On the virtual AMD EPYC machines this was
/// built on since 2026-12-05, both deterministic cache leaves (CPUID 4 and 0x8000001D) return zeros, so
/// libtorch 2.10's oneDNN divided by a zero cache size (SIGFPE in <c>brg_blocking_t::est_eff_1x1</c>, the test host and
/// <c>finetune train densenet121</c> killed) and its AVX2/AVX-512 float32 kernels gave wrong numbers (a batch-norm-folded
/// resnet18 0.73 off the unfolded one on features of 3.1; predict up to 0.03 off PyTorch 1.13's probabilities). Its AVX
/// kernels do not use those sizes and agree again. So on such a processor oneDNN is capped at AVX
/// (<c>ONEDNN_MAX_CPU_ISA</c>) before libtorch makes its first primitive, unless the user set the variable.
/// </summary>
internal static partial class OneDnnIsa
{
    private const string Variable = "ONEDNN_MAX_CPU_ISA";

    // A library's module initializer (CA2255): the cap must be in the native environment before any code of this
    // assembly reaches libtorch, whichever host (CLI, Functions, tests) loads it.
#pragma warning disable CA2255
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void CapWhereCachesAreUnreported()
    {
        if (!OperatingSystem.IsLinux() || Environment.GetEnvironmentVariable(Variable) is not null || !CachesUnreported()) return;
        // Environment.SetEnvironmentVariable changes .NET's copy only; oneDNN reads the C library's.
        if (SetEnv(Variable, "AVX", overwrite: 0) == 0) Environment.SetEnvironmentVariable(Variable, "AVX");
    }

    /// <summary>
    /// Neither deterministic cache leaf describes a cache: Intel's (CPUID 4) nor AMD's (0x8000001D), where a real
    /// processor lists its L1 first (cache type, EAX bits 0-4, nonzero).
    /// </summary>
    internal static bool CachesUnreported()
    {
        if (!X86Base.IsSupported) return false;
        static bool Described(int leaf, uint highest) => (uint)leaf <= highest && (X86Base.CpuId(leaf, 0).Eax & 0x1F) != 0;
        uint basic = (uint)X86Base.CpuId(0, 0).Eax, extended = (uint)X86Base.CpuId(unchecked((int)0x80000000), 0).Eax;
        return !Described(4, basic) && !Described(unchecked((int)0x8000001D), extended);
    }

    [LibraryImport("libc", EntryPoint = "setenv", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int SetEnv(string name, string value, int overwrite);
}
