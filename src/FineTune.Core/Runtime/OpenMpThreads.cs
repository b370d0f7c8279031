using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace FineTune.Core.Runtime;

/// <summary>
/// libtorch's CPU kernels (ATen and oneDNN) size their OpenMP team by the calling thread's OpenMP setting. A frozen
/// backbone's forward pass over a small batch keeps two cores only partly busy (resnet18, channels-last, 2 cores: 11 ms
/// per image on one thread with two cores vs 8.8 ms per image from two threads with one core each, measured in PyTorch);
/// two threads of one core each use both. <c>torch.set_num_threads</c> would also change the process's default, which
/// any thread first using torch meanwhile would keep for good; <c>omp_set_num_threads</c> sets the calling thread's alone.
/// </summary>
public static class OpenMpThreads
{
    private static readonly Lazy<SetNumThreads?> Setter = new(Find);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate void SetNumThreads(int count);

    /// <summary>Whether <see cref="OneThread"/> can set a thread's OpenMP team size (libtorch loaded, linked to OpenMP).</summary>
    public static bool Available => Setter.Value is not null;

    /// <summary>
    /// Makes libtorch's CPU kernels run on the calling thread alone until the scope ends; then the thread gets torch's
    /// intra-op thread count back. Null when <see cref="Available"/> is false.
    /// </summary>
    public static IDisposable? OneThread()
    {
        if (Setter.Value is not { } set) return null;
        // Asking torch first makes it initialise this thread's setting now, not over ours at the thread's first parallel op.
        int restore = get_num_threads();
        set(1);
        return new Restore(() => set(restore));
    }

    /// <summary>
    /// libtorch_cpu's own <c>omp_set_num_threads</c>: the OpenMP runtime it ships under a build-specific name, found
    /// through the loaded library's dependencies (a lookup on a library's handle searches what it loaded).
    /// </summary>
    private static SetNumThreads? Find()
    {
        if (!OperatingSystem.IsLinux()) return null;
        // Loaded by TorchSharp by now; a bare name finds the loaded library by its soname.
        _ = get_num_threads();
        if (!NativeLibrary.TryLoad("libtorch_cpu.so", out var torch)) return null;
        return NativeLibrary.TryGetExport(torch, "omp_set_num_threads", out var export)
            ? Marshal.GetDelegateForFunctionPointer<SetNumThreads>(export)
            : null;
    }

    private sealed class Restore(Action action) : IDisposable
    {
        public void Dispose() => action();
    }
}
