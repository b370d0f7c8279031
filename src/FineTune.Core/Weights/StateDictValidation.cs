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
}
