using FineTune.Core.Data;
using FineTune.Core.Models;

namespace FineTune.Core.Tests.Data;

/// <summary>
/// Decoded images kept (for the feature pass after the scan, or across a run's epochs) so that no file is decoded twice:
/// what is kept must be what the pass would have made of the file, bad files are not kept, and the budget bounds what is.
/// </summary>
public sealed class FittedImagesTests : IDisposable
{
    private static readonly Preprocessing Crop = ModelRegistry.Get("resnet18").Preprocessing;
    private readonly string _dir = Directory.CreateTempSubdirectory("fitted-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void TheScanKeepsEachGoodPhotoAsThePassWouldFitIt()
    {
        string root = TuxPaintStamps.CreateImageFolder(Path.Combine(_dir, "photos"), perClass: 3, ["animals", "food"]);
        File.WriteAllBytes(Path.Combine(root, "food", "truncated.png"), File.ReadAllBytes(Directory.GetFiles(Path.Combine(root, "food"))[0])[..100]);
        var pad = Crop with { Resize = ResizeMode.Pad };
        var kept = new FittedImages(pad);

        var dataset = DatasetLoader.Load(root, new DatasetOptions { ValidationFraction = 0.4, MaxBadFraction = 0.5 }, keep: kept);

        var good = dataset.Train.Concat(dataset.Validation).ToList();
        Assert.Single(dataset.Skipped);
        Assert.Equal(good.Count, kept.Count);
        foreach (var sample in good)
            Assert.Equal(ImageLoader.Fit(ImageLoader.Decode(sample.Path), pad).Pixels, kept.Take(sample.Path)!.Pixels);
        // Handed out once.
        Assert.Equal(0, kept.Count);
        Assert.Null(kept.Take(good[0].Path));
    }

    [Fact]
    public void WhatIsKeptStaysWithinTheBudget()
    {
        string root = TuxPaintStamps.CreateImageFolder(Path.Combine(_dir, "photos"), perClass: 4, ["animals", "food"]);
        var kept = new FittedImages(Crop, budgetBytes: 3L * 224 * 224 * 3);

        var dataset = DatasetLoader.Load(root, new DatasetOptions(), keep: kept);

        Assert.Equal(8, dataset.Train.Count + dataset.Validation.Count);
        Assert.Equal(3, kept.Count);
    }

    [Fact]
    public void ASourceTakesKeptImagesOnlyForItsOwnPreprocessingAndWithoutAugmentation()
    {
        var photo = TuxPaintStamps.Images("animals", 1)[0];
        var samples = new[] { new ImageSample(photo, 0) };
        // A kept image that differs from the file: whichever the source used shows in its input.
        var kept = new FittedImages(Crop);
        kept.Keep(photo, RgbImage.Filled(300, 300, (0, 0, 0)));

        using var fromFile = new FileImageSource(samples, Crop with { Resize = ResizeMode.Pad }, fitted: kept).Range(0, 1);
        using var augmented = new FileImageSource(samples, Crop, new Augmentation(), fitted: kept).Batch([0], _ => 1);
        Assert.Equal(1, kept.Count);
        using var fromKept = new FileImageSource(samples, Crop, fitted: kept).Range(0, 1);

        Assert.Equal(0, kept.Count);
        Assert.True(fromKept.max().item<float>() < -1.5f, "the kept (black) image was not used");
        Assert.True(fromFile.max().item<float>() > 2f, "the photo was not decoded");
    }

    [Fact]
    public void ImagesKeptAcrossEpochsAreDecodedOnceAndGiveTheSameInputEveryEpoch()
    {
        var photos = TuxPaintStamps.Images("animals", 3).Select((photo, i) =>
        {
            string copy = Path.Combine(_dir, $"{i}.png");
            File.Copy(photo, copy);
            return new ImageSample(copy, i);
        }).ToArray();
        // Room for two of the three: the third is decoded every epoch.
        var kept = new FittedImages(Crop, budgetBytes: 2L * 224 * 224 * 3, keptAcrossEpochs: true);
        var source = new FileImageSource(photos, Crop, fitted: kept);

        using var first = source.Range(0, 3);
        var keptPhotos = photos.Where(p => kept.Take(p.Path) is not null).ToList();
        Assert.Equal(2, keptPhotos.Count);
        foreach (var photo in keptPhotos) File.Delete(photo.Path);
        using var again = source.Range(0, 3);

        Assert.True(again.SameAs(first));
        Assert.Equal(2, kept.Count);
        // An augmented source takes none.
        Assert.ThrowsAny<IOException>(() => new FileImageSource(photos, Crop, new Augmentation(), fitted: kept).Batch([photos.IndexOf(keptPhotos[0])], _ => 1).Dispose());
    }
}
