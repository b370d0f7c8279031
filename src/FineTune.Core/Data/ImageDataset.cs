namespace FineTune.Core.Data;

/// <summary>
/// One labelled image file: <see cref="Path"/> where this process reads it, <see cref="Name"/> what the user calls it
/// (<c>blob:data/cat/1.png</c>, <c>photos.zip!/cat/1.png</c>), which reports and errors show.
/// </summary>
public sealed record ImageSample(string Path, int Label)
{
    public string Name { get; init; } = Path;
}

/// <summary>A file that was left out, named as the user names it (<see cref="ImageSample.Name"/>), and why.</summary>
public sealed record SkippedFile(string Path, string Reason);

/// <summary>
/// A labelled image dataset, scanned and split: class names in index order (sorted, like torchvision's
/// ImageFolder), the training, validation and test samples (no test set: empty), and the files that could not be used.
/// Validation chooses the best epoch; the final report is on the held-out test set when there is one.
/// </summary>
public sealed record ImageDataset(
    IReadOnlyList<string> Classes,
    IReadOnlyList<ImageSample> Train,
    IReadOnlyList<ImageSample> Validation,
    IReadOnlyList<ImageSample> Test,
    IReadOnlyList<SkippedFile> Skipped)
{
    public int ClassCount => Classes.Count;

    /// <summary>The split the final evaluation reports on: <see cref="DatasetSplits.Test"/> or <see cref="DatasetSplits.Validation"/>.</summary>
    public string EvaluationSplit => Test.Count > 0 ? DatasetSplits.Test : DatasetSplits.Validation;
}

/// <summary>A dataset that cannot be trained on, with what is wrong.</summary>
public sealed class InvalidDatasetException(string message) : BadInputException(message);
