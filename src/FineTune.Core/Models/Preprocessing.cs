using System.Text.Json;
using System.Text.Json.Serialization;
using FineTune.Core.Data;

namespace FineTune.Core.Models;

[JsonConverter(typeof(ChannelOrderJson))]
public enum ChannelOrder { Rgb, Bgr }

public sealed class ChannelOrderJson() : JsonStringEnumConverter<ChannelOrder>(JsonNamingPolicy.CamelCase);

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
/// How an image becomes the input tensor a model expects (timm's <c>PretrainedCfg</c>, torchvision's
/// <c>weights.transforms()</c>): fit it to a <see cref="CropSize"/> square (<see cref="Resize"/>, resampled with
/// <see cref="Interpolation"/>), scale 0–255 pixels by <see cref="Scale"/>, order the channels, subtract
/// <see cref="MeanImage"/> where the weights have one, then subtract <see cref="Mean"/> and divide by
/// <see cref="Std"/> per channel. Each weights tag has its own (<see cref="Weights.WeightsTag"/>); a builder's
/// <see cref="ModelFamily.Preprocessing"/> is the one used without named weights. The one record the model card,
/// the ONNX metadata, <c>config.json</c> and the README script state.
/// </summary>
public sealed record Preprocessing(
    int ResizeSize,
    int CropSize,
    ChannelOrder ChannelOrder,
    float Scale,
    IReadOnlyList<float> Mean,
    IReadOnlyList<float> Std)
{
    public static readonly IReadOnlyList<float> ImageNetMean = [0.485f, 0.456f, 0.406f];
    public static readonly IReadOnlyList<float> ImageNetStd = [0.229f, 0.224f, 0.225f];

    /// <summary>A per-pixel mean (CHW, CropSize × CropSize, after scaling and channel order), read when first needed.</summary>
    [JsonIgnore]
    public Lazy<float[]>? MeanImage { get; init; }

    /// <summary>
    /// Whether a mean image is subtracted: what JSON states. The pixels stay with the family, which attaches them
    /// again to a record read back (<see cref="ModelFamily.Restore"/>), so the value read is not kept.
    /// </summary>
    [JsonPropertyName("meanImage")]
    public bool SubtractsMeanImage { get => MeanImage is not null; init { } }

    public ResizeMode Resize { get; init; } = ResizeMode.CenterCrop;

    public Interpolation Interpolation { get; init; } = Interpolation.Bilinear;

    /// <summary>The colour <see cref="ResizeMode.Pad"/> centres an image on, as <c>#rrggbb</c>.</summary>
    public static string Background => $"#{ImageLoader.Background.R:x2}{ImageLoader.Background.G:x2}{ImageLoader.Background.B:x2}";

    /// <summary>timm's crop_pct: the share of the resized short side the crop keeps.</summary>
    [JsonIgnore]
    public double CropPct => Math.Round((double)CropSize / ResizeSize, 4);

    /// <summary>torchvision's ImageNet normalisation with the given sizes: what most weights were trained with.</summary>
    public static Preprocessing ImageNet(int resizeSize = 256, int cropSize = 224, Interpolation interpolation = Interpolation.Bilinear) =>
        new(resizeSize, cropSize, ChannelOrder.Rgb, 1f / 255f, ImageNetMean, ImageNetStd) { Interpolation = interpolation };
}
