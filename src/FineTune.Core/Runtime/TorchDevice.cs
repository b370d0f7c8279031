using TorchSharp;
using static TorchSharp.torch;

namespace FineTune.Core.Runtime;

/// <summary>Where tensors live: the job's <c>auto | cpu | cuda</c> choice, resolved on this machine.</summary>
public static class TorchDevice
{
    /// <summary>
    /// TF32 tensor-core matmuls and convolutions on CUDA (Ampere and newer): about 10 significant bits instead
    /// of 23 for several times the speed, which fine-tuning tolerates. TorchSharp 0.107 has no autocast, so
    /// mixed precision goes no further than this. No effect on the CPU.
    /// </summary>
    public static void UseTf32(Device device, bool enabled)
    {
        if (device.type != DeviceType.CUDA) return;
        backends.cuda.matmul.allow_tf32 = enabled;
        backends.cudnn.allow_tf32 = enabled;
    }

    /// <summary>auto picks CUDA when this build (TorchBackend=cuda) and this machine have it, else the CPU.</summary>
    public static Device Resolve(string choice) => choice switch
    {
        "cpu" => CPU,
        "auto" => cuda.is_available() ? CUDA : CPU,
        "cuda" => cuda.is_available()
            ? CUDA
            : throw new DeviceUnavailableException("device 'cuda' was requested, but CUDA is not available here: build with -p:TorchBackend=cuda and run on a machine with an NVIDIA GPU, or use 'auto'"),
        _ => throw new ArgumentException($"device '{choice}' is not one of auto, cpu, cuda", nameof(choice)),
    };
}

/// <summary>The job asks for a device this build or machine does not have.</summary>
public sealed class DeviceUnavailableException(string message) : Exception(message);
