using System.Collections.Concurrent;
using FineTune.Core.Models;

namespace FineTune.Core.Data;

/// <summary>
/// Images kept fitted to a model's input square, by file, under a byte budget: past it, files are decoded where they are
/// used. Either the images a dataset scan decodes to check them, for the pass that comes next (the frozen-backbone
/// feature pass), so that no file is decoded twice: each handed out once, then dropped; or, with
/// <paramref name="keptAcrossEpochs"/>, the images a run training on images without augmentation decodes (its training
/// and scoring sources add them, <see cref="Offer"/>), handed out every epoch.
/// </summary>
public sealed class FittedImages(Preprocessing preprocessing, long budgetBytes = FittedImages.DefaultBudgetBytes, bool keptAcrossEpochs = false)
{
    /// <summary>
    /// ~430 images at 224 × 224: a small set is decoded once, a large one's first images are. Measured on 1,400 fashion-mnist
    /// images: keeping all of them (210 MB, 256 MB then) raised the run's peak RSS from 848 to 1,271 MB, as each kept image's
    /// buffers wait for a full collection; decoding a photo again costs a tenth of its backbone pass or less.
    /// </summary>
    public const long DefaultBudgetBytes = 64L << 20;

    private readonly ConcurrentDictionary<string, RgbImage> _images = new(StringComparer.Ordinal);
    private long _bytes;

    public Preprocessing Preprocessing => preprocessing;

    /// <summary>Images kept: not handed out yet, or, kept across epochs, all of them.</summary>
    public int Count => _images.Count;

    /// <summary>Keeps <paramref name="decoded"/> (the file at <paramref name="path"/>) fitted, while the budget lasts.</summary>
    public void Keep(string path, RgbImage decoded)
    {
        if (!Reserve()) return;
        try
        {
            _images[path] = ImageLoader.Fit(decoded, preprocessing);
        }
        catch (ArgumentException)
        {
            // Not kept: the pass fits the file itself and meets the same failure there, where it belongs.
            Interlocked.Add(ref _bytes, -ImageBytes);
        }
    }

    /// <summary>When kept across epochs: keeps <paramref name="fitted"/>, the file at <paramref name="path"/> just fitted where it was used, while the budget lasts.</summary>
    public void Offer(string path, RgbImage fitted)
    {
        if (keptAcrossEpochs && !_images.ContainsKey(path) && Reserve() && !_images.TryAdd(path, fitted))
            Interlocked.Add(ref _bytes, -ImageBytes);
    }

    /// <summary>The kept image of <paramref name="path"/> (removed, unless kept across epochs); null when it was not kept or was taken already.</summary>
    public RgbImage? Take(string path) => keptAcrossEpochs
        ? _images.GetValueOrDefault(path)
        : _images.TryRemove(path, out var image) ? image : null;

    private long ImageBytes => 3L * preprocessing.CropSize * preprocessing.CropSize;

    private bool Reserve()
    {
        if (Interlocked.Add(ref _bytes, ImageBytes) <= budgetBytes) return true;
        Interlocked.Add(ref _bytes, -ImageBytes);
        return false;
    }
}
