namespace FineTune.Core.Data;

/// <summary>How a dataset is read and split, and the limits that keep bad or hostile data from hurting a run.</summary>
public sealed record DatasetOptions
{
    /// <summary>Share of each class held out for validation when the dataset has no validation folder.</summary>
    public double ValidationFraction { get; init; } = 0.2;

    /// <summary>Share of each class held out for testing when the dataset has no test folder; 0: no test set.</summary>
    public double TestFraction { get; init; }

    /// <summary>Seed of the stratified splits.</summary>
    public int SplitSeed { get; init; }

    /// <summary>A run fails when more than this share of the files cannot be used; below it they are skipped and reported.</summary>
    public double MaxBadFraction { get; init; } = 0.05;

    public long MaxFileBytes { get; init; } = 50L * 1024 * 1024;

    /// <summary>Width × height above which an image is refused before decoding (decompression bombs).</summary>
    public long MaxPixels { get; init; } = 50_000_000;

    /// <summary>
    /// Long side over short side above which an image is refused: resizing its short side to the model's input
    /// would make it huge (a 1×4000 PNG of 100 bytes becomes 256×1,024,000 pixels).
    /// </summary>
    public double MaxAspectRatio { get; init; } = ImageLoader.DefaultMaxAspectRatio;

    public int MaxZipEntries { get; init; } = 200_000;

    /// <summary>
    /// The most bytes a .zip dataset may expand to, counted as they are written (a zip can hold a 2 GiB entry in 4 MB).
    /// Less when the disk has less to spare: see <see cref="DiskSpaceKeptFree"/>.
    /// </summary>
    public long MaxExpandedBytes { get; init; } = DefaultMaxExpandedBytes;

    public const long DefaultMaxExpandedBytes = 4L * 1024 * 1024 * 1024;

    /// <summary>Disk space an unpacked .zip must leave free on its folder's file system (for checkpoints, other runs).</summary>
    public long DiskSpaceKeptFree { get; init; } = 1L * 1024 * 1024 * 1024;

    /// <summary>Decode and scan files on this many threads.</summary>
    public int Parallelism { get; init; } = Environment.ProcessorCount;
}
