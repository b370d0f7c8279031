namespace FineTune.Core.Weights;

/// <summary>
/// What every format's validator (<see cref="SafetensorsFormat"/>, <see cref="PyTorchFormat"/>,
/// <see cref="TorchSharpFormat"/>) holds to: a weights file's own description of its tensors is checked against the
/// file before anything is allocated, so a small file cannot make the reader build huge tensors. A reason never
/// quotes the file: tensor names, strings and unknown codes are the file's content (a file named as weights may be
/// anyone's), so entries are named by their position and only sizes and offsets are given.
/// </summary>
internal static class StateDictValidation
{
    public const int MaxTensors = 100_000;
    public const int MaxDimensions = 16;

    public static InvalidWeightsException Invalid(string reason) => new(reason);

    /// <summary>Bytes per element of a dtype a weights file may hold; null for any other.</summary>
    public static int? ElementBytes(TorchSharp.torch.ScalarType dtype) => dtype switch
    {
        TorchSharp.torch.ScalarType.Byte or TorchSharp.torch.ScalarType.Int8 or TorchSharp.torch.ScalarType.Bool => 1,
        TorchSharp.torch.ScalarType.Int16 or TorchSharp.torch.ScalarType.Float16 or TorchSharp.torch.ScalarType.BFloat16 => 2,
        TorchSharp.torch.ScalarType.Int32 or TorchSharp.torch.ScalarType.Float32 => 4,
        TorchSharp.torch.ScalarType.Int64 or TorchSharp.torch.ScalarType.Float64 or TorchSharp.torch.ScalarType.ComplexFloat32 => 8,
        TorchSharp.torch.ScalarType.ComplexFloat64 => 16,
        _ => null,
    };
}
