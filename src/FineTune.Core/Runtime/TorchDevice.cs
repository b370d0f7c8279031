using System.Text.Json.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTune.Core.Runtime;

/// <summary>The device a job asks for; <see cref="TorchDevice.Resolve"/> finds it on this machine.</summary>
[JsonConverter(typeof(DeviceKindJson))]
public enum DeviceKind { Auto, Cpu, Cuda }

public sealed class DeviceKindJson() : ChoiceJsonConverter<DeviceKind, Choice<DeviceKind>>(TorchDevice.Choices);

/// <summary>Where tensors live: the job's device choice, resolved on this machine.</summary>
public static class TorchDevice
{
    public static readonly ChoiceTable<DeviceKind, Choice<DeviceKind>> Choices = new(
        new(DeviceKind.Auto, "auto", "CUDA when this build and machine have it, else the CPU"),
        new(DeviceKind.Cpu, "cpu", "the CPU"),
        new(DeviceKind.Cuda, "cuda", "an NVIDIA GPU; fails where there is none"));

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
    public static Device Resolve(DeviceKind choice) => choice switch
    {
        DeviceKind.Cpu => CPU,
        DeviceKind.Auto => cuda.is_available() ? CUDA : CPU,
        DeviceKind.Cuda => cuda.is_available()
            ? CUDA
            : throw new DeviceUnavailableException("device 'cuda' was requested, but CUDA is not available here: build with -p:TorchBackend=cuda and run on a machine with an NVIDIA GPU, or use 'auto'"),
        _ => throw new ArgumentOutOfRangeException(nameof(choice), choice, "not a device"),
    };
}

/// <summary>The job asks for a device this build or machine does not have.</summary>
public sealed class DeviceUnavailableException(string message) : BadInputException(message);
