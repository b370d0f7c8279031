using FineTune.Core.Models;
using static TorchSharp.torch;

namespace FineTune.Core.Data;

/// <summary>Labelled images as model inputs, by index.</summary>
public interface IImageSource
{
    int Count { get; }
    int Label(int index);

    /// <summary>The input tensor [3, H, W]; <paramref name="augmentationSeed"/> drives any random augmentation.</summary>
    Tensor Image(int index, int augmentationSeed);

    /// <summary>Whether <see cref="Image"/> depends on the seed (train-time augmentation).</summary>
    bool IsAugmented { get; }
}

/// <summary>Image files, decoded and preprocessed for a model family on every access.</summary>
public sealed class FileImageSource(IReadOnlyList<ImageSample> samples, Preprocessing preprocessing, Augmentation? augmentation = null)
    : IImageSource
{
    public IReadOnlyList<ImageSample> Samples => samples;
    public int Count => samples.Count;
    public bool IsAugmented => augmentation is not null;
    public int Label(int index) => samples[index].Label;

    public Tensor Image(int index, int augmentationSeed)
    {
        if (augmentation is null) return ImageLoader.Load(samples[index].Path, preprocessing);
        using var decoded = ImageLoader.Decode(samples[index].Path);
        using var view = augmentation.Apply(decoded, preprocessing, new Random(augmentationSeed));
        return ImageLoader.ToTensor(view, preprocessing);
    }
}

/// <summary>Images already in memory ([N, 3, H, W]), e.g. the reference data of parity tests.</summary>
public sealed class TensorImageSource(Tensor images, IReadOnlyList<int> labels) : IImageSource
{
    public int Count => labels.Count;
    public bool IsAugmented => false;
    public int Label(int index) => labels[index];
    public Tensor Image(int index, int augmentationSeed) => images[index];
}
