using System.Text.Json.Serialization;

namespace FineTune.Core.Models;

public enum ChannelOrder { Rgb, Bgr }

/// <summary>How an image of any shape becomes the square model input.</summary>
[JsonConverter(typeof(ResizeModeJson))]
public enum ResizeMode
{
    /// <summary>torchvision's: short side to ResizeSize, then the centre CropSize square (edges are lost).</summary>
    CenterCrop,
    /// <summary>Long side to CropSize, centred on the background colour: nothing is cut off (cut-outs, thin objects).</summary>
    Pad,
}

/// <summary>The resize modes by their names in job specs, on the command line and in model cards.</summary>
public static class ResizeModes
{
    public static readonly ChoiceTable<ResizeMode, Choice<ResizeMode>> Choices = new(
        new(ResizeMode.CenterCrop, "crop", "torchvision's resize + centre crop"),
        new(ResizeMode.Pad, "pad", "the whole image on white: cut-outs, thin objects"));
}

public sealed class ResizeModeJson() : ChoiceJsonConverter<ResizeMode, Choice<ResizeMode>>(ResizeModes.Choices);

/// <summary>
/// How an image becomes the input tensor a family's weights expect: fit it to a <see cref="CropSize"/> square
/// (<see cref="Resize"/>), scale 0–255 pixels by <see cref="Scale"/>,
/// order the channels, subtract <see cref="MeanImage"/> where the family has one, then subtract
/// <see cref="Mean"/> and divide by <see cref="Std"/> per channel.
/// </summary>
public sealed record Preprocessing(
    int ResizeSize,
    int CropSize,
    ChannelOrder ChannelOrder,
    float Scale,
    IReadOnlyList<float> Mean,
    IReadOnlyList<float> Std)
{
    /// <summary>A per-pixel mean (CHW, CropSize × CropSize, after scaling and channel order), read when first needed.</summary>
    public Lazy<float[]>? MeanImage { get; init; }

    public ResizeMode Resize { get; init; } = ResizeMode.CenterCrop;

    public static Preprocessing ImageNet(int resizeSize = 256, int cropSize = 224) =>
        new(resizeSize, cropSize, ChannelOrder.Rgb, 1f / 255f, [0.485f, 0.456f, 0.406f], [0.229f, 0.224f, 0.225f]);
}
