using System.Collections.Concurrent;
using System.Globalization;

namespace FineTune.Core.Data;

/// <summary>
/// Reads a labelled image dataset: an ImageFolder tree (<see cref="FolderSource"/>), the same as a .zip
/// (<see cref="ZipExtraction"/>), or a .csv or .jsonl manifest (<see cref="ManifestSource"/>). A part the dataset does not give is
/// carved from the training images (<see cref="StratifiedSplit"/>): validation always, test when
/// <see cref="DatasetOptions.TestFraction"/> asks. Every file is checked and decoded once here, so training never meets a bad file.
/// </summary>
public static class DatasetLoader
{
    private const int NamedInErrors = 5;

    /// <param name="location">a folder, a .zip, a .csv or a .jsonl</param>
    /// <param name="extractTo">where a .zip is unpacked (a fresh temporary folder when null)</param>
    /// <param name="keep">where the images the scan decodes are kept for the pass that follows (none when null)</param>
    /// <param name="name">
    /// what the user calls <paramref name="location"/> (a blob name when it is this worker's copy; the location itself when
    /// null): samples, skipped files and errors name files from it (<see cref="ImageSample.Name"/>)
    /// </param>
    public static ImageDataset Load(string location, DatasetOptions options, string? extractTo = null, FittedImages? keep = null, string? name = null)
    {
        name ??= location;
        if (Directory.Exists(location)) return Build(FolderSource.Read(location, DatasetNames.Under(location, name)), options, keep);
        if (!File.Exists(location))
            throw new InvalidDatasetException($"dataset '{name}' does not exist");
        if (ManifestSource.IsManifest(location)) return Build(ManifestSource.Read(location, name), options, keep);
        switch (Path.GetExtension(location).ToLowerInvariant())
        {
            case ".zip":
                string destination = extractTo ?? Directory.CreateTempSubdirectory("dataset-").FullName;
                return Build(FolderSource.Read(ZipExtraction.Extract(location, name, options, destination), new DatasetNames(destination, name + "!/")), options, keep);
            default:
                throw new InvalidDatasetException($"dataset '{name}' is neither a folder, a .zip nor a .csv or .jsonl manifest");
        }
    }

    private static ImageDataset Build(DatasetParts parts, DatasetOptions options, FittedImages? keep)
    {
        var classes = parts.Classes;
        if (classes.Count == 0)
            throw new InvalidDatasetException("the dataset is empty: no class folders (one folder per class) or labels");
        var skipped = new ConcurrentBag<SkippedFile>();
        List<List<string>>? ScanAll(List<List<string>>? byClass) => byClass?.Select(files => Scan(parts, files, options, skipped, keep)).ToList();
        var goodPool = ScanAll(parts.Pool)!;
        var goodVal = ScanAll(parts.Validation);
        var goodTest = ScanAll(parts.Test);

        int total = new[] { parts.Pool, parts.Validation, parts.Test }.Sum(p => p?.Sum(f => f.Count) ?? 0);
        var skippedList = skipped.OrderBy(s => s.Path, StringComparer.Ordinal).ToList();
        if (total == 0)
            throw new InvalidDatasetException("the dataset is empty: no image files");
        if (skippedList.Count > options.MaxBadFraction * total)
            throw new InvalidDatasetException(
                $"{skippedList.Count} of {total} files cannot be used, over the {options.MaxBadFraction:P0} allowed: " +
                string.Join("; ", skippedList.Take(NamedInErrors).Select(s => $"{s.Path}: {s.Reason}")));
        var empty = classes.Where((_, i) => goodPool[i].Count + (goodVal?[i].Count ?? 0) + (goodTest?[i].Count ?? 0) == 0).ToList();
        if (empty.Count > 0)
            throw new InvalidDatasetException($"classes with no usable images: {string.Join(", ", empty)}");
        if (classes.Count < 2)
            throw new InvalidDatasetException($"only one class ({classes[0]}): a classifier needs at least two");

        // A part the dataset gives is used as given; only the others are carved from the pool.
        var (train, validation, test) = StratifiedSplit.Of(goodPool, goodVal is null ? options.ValidationFraction : 0,
            goodTest is null ? options.TestFraction : 0, options.SplitSeed);
        if (goodVal is not null) validation = Samples(goodVal);
        if (goodTest is not null) test = Samples(goodTest);
        (train, validation, test) = (Named(train, parts.Names), Named(validation, parts.Names), Named(test, parts.Names));
        if (validation.Count == 0)
            throw new InvalidDatasetException("the validation set is empty: add a val/ folder, or use a validation fraction above 0 with at least two images per class");
        if (test.Count == 0 && goodTest is not null)
            throw new InvalidDatasetException("the test set is empty: the test folder or rows hold no usable image");
        if (test.Count == 0 && options.TestFraction > 0)
            throw new InvalidDatasetException(
                $"the test set is empty: a test fraction of {options.TestFraction.ToString(CultureInfo.InvariantCulture)} takes no image of any class; " +
                "use a larger fraction or more images per class");
        return new ImageDataset(classes, train, validation, test, skippedList);
    }

    private static List<ImageSample> Samples(List<List<string>> byClass) =>
        byClass.SelectMany((files, label) => files.Select(f => new ImageSample(f, label))).ToList();

    private static List<ImageSample> Named(List<ImageSample> samples, DatasetNames names) => samples.Select(s => s with { Name = names.Of(s.Path) }).ToList();

    private static List<string> Scan(DatasetParts parts, List<string> files, DatasetOptions options, ConcurrentBag<SkippedFile> skipped, FittedImages? keep)
    {
        var good = new ConcurrentBag<string>();
        Parallel.ForEach(files, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, options.Parallelism) }, file =>
        {
            string? reason = Check(parts.Root, file, options, keep);
            if (reason is null) good.Add(file);
            else skipped.Add(new SkippedFile(parts.Names.Of(file), reason));
        });
        return good.Order(StringComparer.Ordinal).ToList();
    }

    private static string? Check(string root, string file, DatasetOptions options, FittedImages? keep)
    {
        try
        {
            if (!File.Exists(file)) return "does not exist";
            // A link may point anywhere on the machine: only what resolves into the dataset is read.
            if (!DatasetPaths.ResolvesInside(root, file)) return "is a link to a file outside the dataset";
            long length = new FileInfo(file).Length;
            if (length == 0) return "empty file";
            if (length > options.MaxFileBytes) return $"{length} bytes is over the {options.MaxFileBytes}-byte limit";
            var decoded = ImageLoader.Decode(file, options.MaxPixels, options.MaxAspectRatio);
            keep?.Keep(file, decoded);
            return null;
        }
        catch (InvalidImageException e)
        {
            return e.Reason;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The runtime's message names the full path; the file is already named next to the reason.
            return $"unreadable: {e.Message.Replace(file, Path.GetFileName(file), StringComparison.Ordinal)}";
        }
    }
}
