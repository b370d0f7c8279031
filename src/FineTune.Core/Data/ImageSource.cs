using System.Runtime.ExceptionServices;
using FineTune.Core.Models;
using static TorchSharp.torch;

namespace FineTune.Core.Data;

/// <summary>Labelled images as model inputs, by index.</summary>
public interface IImageSource
{
    int Count { get; }
    int Label(int index);

    /// <summary>
    /// The inputs of the images at <paramref name="indices"/>, [N, 3, H, W], on the CPU;
    /// <paramref name="augmentationSeed"/> gives each image's seed for any random augmentation.
    /// </summary>
    Tensor Batch(IReadOnlyList<int> indices, Func<int, int> augmentationSeed);

    /// <summary>
    /// <see cref="Batch"/> made ahead: the work that needs no tensor (decoding, resizing, augmenting) starts now on other
    /// threads, and the returned function gives the batch, waiting for that work if it has not ended, on the calling thread.
    /// </summary>
    Func<Tensor> Prefetch(IReadOnlyList<int> indices, Func<int, int> augmentationSeed) => () => Batch(indices, augmentationSeed);

    /// <summary>Whether <see cref="Batch"/> depends on the seed (train-time augmentation).</summary>
    bool IsAugmented { get; }
}

/// <summary>
/// Image files, decoded and preprocessed for a model family on every access, a batch's files in parallel; without
/// augmentation, an image kept in <paramref name="fitted"/> (for this preprocessing: by the dataset scan, or by an earlier
/// epoch) is taken instead, and one decoded here is offered to it.
/// </summary>
public sealed class FileImageSource(IReadOnlyList<ImageSample> samples, Preprocessing preprocessing, Augmentation? augmentation = null,
    int parallelism = 0, FittedImages? fitted = null) : IImageSource
{
    private readonly FittedImages? _fitted = augmentation is null && fitted?.Preprocessing == preprocessing ? fitted : null;

    public IReadOnlyList<ImageSample> Samples => samples;
    public int Count => samples.Count;
    public bool IsAugmented => augmentation is not null;
    public int Label(int index) => samples[index].Label;

    public Tensor Batch(IReadOnlyList<int> indices, Func<int, int> augmentationSeed) => ToTensor(Decode(indices, augmentationSeed), indices.Count);

    public Func<Tensor> Prefetch(IReadOnlyList<int> indices, Func<int, int> augmentationSeed)
    {
        var decoding = Task.Run(() => Decode(indices, augmentationSeed));
        // A batch left untaken (the chunk stopped before its step) may have failed: its failure is not the run's.
        _ = decoding.ContinueWith(t => t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
        return () => ToTensor(decoding.GetAwaiter().GetResult(), indices.Count);
    }

    /// <summary>The tensor is made on the caller's thread, inside its dispose scope.</summary>
    private Tensor ToTensor(float[] inputs, int count) => tensor(inputs, [count, 3, preprocessing.CropSize, preprocessing.CropSize]);

    private float[] Decode(IReadOnlyList<int> indices, Func<int, int> augmentationSeed)
    {
        int length = ImageLoader.InputLength(preprocessing);
        var inputs = new float[indices.Count * length];
        // Decoding is the CPU-bound part: spread it over the cores.
        var options = new ParallelOptions { MaxDegreeOfParallelism = parallelism > 0 ? parallelism : Environment.ProcessorCount };
        try
        {
            Parallel.For(0, indices.Count, options, n =>
            {
                int index = indices[n];
                string path = samples[index].Path;
                var input = inputs.AsSpan(n * length, length);
                if (augmentation is null)
                {
                    var fitted = _fitted?.Take(path);
                    if (fitted is null)
                    {
                        fitted = ImageLoader.Fit(ImageLoader.Decode(path), preprocessing);
                        _fitted?.Offer(path, fitted);
                    }
                    ImageLoader.Fill(fitted, preprocessing, input);
                    return;
                }
                var random = new Random(augmentationSeed(index));
                ImageLoader.Fill(augmentation.Apply(ImageLoader.Decode(path), preprocessing, random), preprocessing, input);
                augmentation.Erase(input, preprocessing.CropSize, random);
            });
        }
        catch (AggregateException e)
        {
            // A file that turned bad since the scan fails as itself (bad input, not retried), not as a wrapper.
            ExceptionDispatchInfo.Throw(e.InnerExceptions[0]);
        }
        return inputs;
    }
}

/// <summary>Images already in memory ([N, 3, H, W]), e.g. the reference data of parity tests.</summary>
public sealed class TensorImageSource(Tensor images, IReadOnlyList<int> labels) : IImageSource
{
    public int Count => labels.Count;
    public bool IsAugmented => false;
    public int Label(int index) => labels[index];

    public Tensor Batch(IReadOnlyList<int> indices, Func<int, int> augmentationSeed) =>
        images.index_select(0, tensor(indices.Select(i => (long)i).ToArray()));
}

public static class ImageSourceExtensions
{
    /// <summary>Images <paramref name="start"/> to <paramref name="end"/> (exclusive) without augmentation.</summary>
    public static Tensor Range(this IImageSource source, int start, int end) =>
        source.Batch(Enumerable.Range(start, end - start).ToArray(), _ => 0);
}
