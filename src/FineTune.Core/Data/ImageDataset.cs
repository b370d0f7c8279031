namespace FineTune.Core.Data;

/// <summary>One labelled image file.</summary>
public sealed record ImageSample(string Path, int Label);

/// <summary>A file that was left out, and why.</summary>
public sealed record SkippedFile(string Path, string Reason);

/// <summary>
/// A labelled image dataset, scanned and split: class names in index order (sorted, like torchvision's
/// ImageFolder), the training and validation samples, and the files that could not be used.
/// </summary>
public sealed record ImageDataset(
    IReadOnlyList<string> Classes,
    IReadOnlyList<ImageSample> Train,
    IReadOnlyList<ImageSample> Validation,
    IReadOnlyList<SkippedFile> Skipped)
{
    public int ClassCount => Classes.Count;
}

/// <summary>A dataset that cannot be trained on, with what is wrong.</summary>
public sealed class InvalidDatasetException(string message) : Exception(message);
