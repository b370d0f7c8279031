using System.Collections.Concurrent;
using System.Globalization;
using System.IO.Compression;

namespace FineTune.Core.Data;

/// <summary>
/// Reads a labelled image dataset: an ImageFolder tree (one folder per class, or a split dataset: a training
/// folder plus validation and/or test folders, each of class folders), the same as a .zip, or a CSV manifest of
/// <c>path,label</c> lines with an optional third <c>split</c> column. A part the dataset does not give is
/// carved from the training images: validation always, test when <see cref="DatasetOptions.TestFraction"/> asks.
/// Every file is checked and decoded once here, so training never meets a bad file.
/// </summary>
public static class DatasetLoader
{
    private const int NamedInErrors = 5;

    /// <summary>
    /// Per class (index = label), the files training draws from, and the validation and test files when the
    /// dataset gives them (null: carved from <see cref="Pool"/>).
    /// </summary>
    /// <param name="Root">the folder every file must resolve into</param>
    private sealed record Parts(string Root, List<string> Classes, List<List<string>> Pool, List<List<string>>? Validation, List<List<string>>? Test);

    /// <summary>A manifest row: the path as written, the file it names (under the manifest's folder), its label and split.</summary>
    private sealed record ManifestRow(string Relative, string Path, string Label, string Split);

    /// <param name="location">a folder, a .zip or a .csv</param>
    /// <param name="extractTo">where a .zip is unpacked (a fresh temporary folder when null)</param>
    /// <param name="keep">where the images the scan decodes are kept for the pass that follows (none when null)</param>
    public static ImageDataset Load(string location, DatasetOptions options, string? extractTo = null, FittedImages? keep = null)
    {
        if (Directory.Exists(location)) return Build(FromFolder(location), options, keep);
        if (!File.Exists(location))
            throw new InvalidDatasetException($"dataset '{location}' does not exist");
        return Path.GetExtension(location).ToLowerInvariant() switch
        {
            ".zip" => Build(FromFolder(Extract(location, options, extractTo ?? Directory.CreateTempSubdirectory("dataset-").FullName)), options, keep),
            ".csv" => Build(FromManifest(location), options, keep),
            _ => throw new InvalidDatasetException($"dataset '{location}' is neither a folder, a .zip nor a .csv manifest"),
        };
    }

    private static Parts FromFolder(string root)
    {
        var splitFolders = ClassFolders(root).Where(name => DatasetSplits.Of(name) is not null).ToList();
        if (splitFolders.Count == 0)
        {
            var all = ClassFolders(root);
            return new Parts(root, all, FilesByClass(root, all), null, null);
        }
        var layout = SplitLayout(splitFolders);
        string train = layout[DatasetSplits.Train];
        var classes = ClassFolders(Path.Combine(root, train));
        if (classes.Count == 0)
            throw new InvalidDatasetException($"{train}/ has no class folders: each split folder holds one folder per class");
        List<List<string>>? Given(string split)
        {
            if (!layout.TryGetValue(split, out var folder)) return null;
            RequireKnown($"{folder}/", ClassFolders(Path.Combine(root, folder)), classes, $"{train}/");
            return FilesByClass(Path.Combine(root, folder), classes);
        }
        return new Parts(root, classes, FilesByClass(Path.Combine(root, train), classes), Given(DatasetSplits.Validation), Given(DatasetSplits.Test));
    }

    /// <summary>
    /// The folder of each split. Split-named folders are never classes, so they must make a split dataset: one
    /// training folder and a validation or test folder, each split named once.
    /// </summary>
    private static Dictionary<string, string> SplitLayout(List<string> folders)
    {
        static string Named(IEnumerable<string> names) => string.Join(", ", names.Select(n => n + "/"));
        var bySplit = folders.GroupBy(f => DatasetSplits.Of(f)!).ToDictionary(g => g.Key, g => g.ToList());
        if (bySplit.Values.FirstOrDefault(g => g.Count > 1) is { } twice)
            throw new InvalidDatasetException($"the folders {Named(twice)} name the same split: keep one");
        if (!bySplit.ContainsKey(DatasetSplits.Train))
            throw new InvalidDatasetException(
                $"the folders {Named(folders)} name dataset splits, but there is no training folder ({DatasetSplits.Folders(DatasetSplits.Train)}) " +
                "next to them; split names are never taken as classes");
        if (bySplit.Count == 1)
            throw new InvalidDatasetException(
                $"the folder {Named(folders)} names a dataset split, but there is no validation folder ({DatasetSplits.Folders(DatasetSplits.Validation)}) " +
                $"or test folder ({DatasetSplits.Folders(DatasetSplits.Test)}) next to it; split names are never taken as classes: " +
                "put the class folders at the top level, or add a validation or test folder");
        return bySplit.ToDictionary(p => p.Key, p => p.Value[0]);
    }

    /// <summary>
    /// The files a CSV manifest names, as written (relative to its folder), each checked to stay under that
    /// folder: what to fetch when the manifest is a blob.
    /// </summary>
    public static IReadOnlyList<string> ManifestFiles(string csv) =>
        ReadManifest(csv).Select(r => Path.GetRelativePath(Path.GetDirectoryName(Path.GetFullPath(csv))!, r.Path)).Distinct().ToList();

    private static Parts FromManifest(string csv)
    {
        var rows = ReadManifest(csv);
        var classes = rows.Where(r => r.Split == DatasetSplits.Train).Select(r => r.Label).Distinct().Order(StringComparer.Ordinal).ToList();
        List<List<string>> ByClass(string split) =>
            classes.Select(c => rows.Where(r => r.Split == split && r.Label == c).Select(r => r.Path).ToList()).ToList();
        List<List<string>>? Given(string split)
        {
            var labels = rows.Where(r => r.Split == split).Select(r => r.Label).ToList();
            if (labels.Count == 0) return null;
            RequireKnown($"{split} rows", labels, classes, "train rows");
            return ByClass(split);
        }
        return new Parts(Path.GetDirectoryName(Path.GetFullPath(csv))!, classes, ByClass(DatasetSplits.Train), Given(DatasetSplits.Validation), Given(DatasetSplits.Test));
    }

    /// <summary>Every row, its path resolved under the manifest's folder: an absolute path or one leaving the folder is refused.</summary>
    private static List<ManifestRow> ReadManifest(string csv)
    {
        string baseDir = Path.GetDirectoryName(Path.GetFullPath(csv))!;
        var rows = new List<ManifestRow>();
        var firstLine = new Dictionary<string, int>(StringComparer.Ordinal);
        int lineNumber = 0;
        foreach (var line in File.ReadLines(csv))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            var cells = line.Split(',');
            if (cells.Length is not (2 or 3))
                throw new InvalidDatasetException($"{csv}:{lineNumber}: expected 'path,label' or 'path,label,split', found {cells.Length} fields");
            string path = cells[0].Trim(), label = cells[1].Trim(), split = cells.Length == 3 ? cells[2].Trim() : "";
            if (lineNumber == 1 && path.Equals("path", StringComparison.OrdinalIgnoreCase)) continue;
            if (path.Length == 0 || label.Length == 0)
                throw new InvalidDatasetException($"{csv}:{lineNumber}: empty path or label");
            // No split named: the row is a training image, as in a two-column manifest.
            string part = split.Length == 0 ? DatasetSplits.Train : DatasetSplits.Of(split)
                ?? throw new InvalidDatasetException($"{csv}:{lineNumber}: '{split}' is not a split; use one of {DatasetSplits.AllAliases}");
            var (full, problem) = DatasetPaths.UnderFolder(baseDir, path);
            if (full is null)
                throw new InvalidDatasetException($"{csv}:{lineNumber}: {problem}");
            // One file in two rows would be counted twice, or under two labels, or in two splits.
            if (!firstLine.TryAdd(full, lineNumber))
                throw new InvalidDatasetException($"{csv}:{lineNumber}: '{path}' is already listed on line {firstLine[full]}");
            rows.Add(new ManifestRow(path, full, label, part));
        }
        return rows;
    }

    private static void RequireKnown(string part, IEnumerable<string> found, List<string> classes, string trainPart)
    {
        var extra = found.Distinct().Except(classes).Order(StringComparer.Ordinal).ToList();
        if (extra.Count > 0)
            throw new InvalidDatasetException($"{part} has classes that {trainPart} lacks: {string.Join(", ", extra)}");
    }

    private static ImageDataset Build(Parts parts, DatasetOptions options, FittedImages? keep)
    {
        var classes = parts.Classes;
        if (classes.Count == 0)
            throw new InvalidDatasetException("the dataset is empty: no class folders (one folder per class) or labels");
        var skipped = new ConcurrentBag<SkippedFile>();
        List<List<string>>? ScanAll(List<List<string>>? byClass) => byClass?.Select(files => Scan(parts.Root, files, options, skipped, keep)).ToList();
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
        var (train, validation, test) = StratifiedSplit(goodPool, goodVal is null ? options.ValidationFraction : 0,
            goodTest is null ? options.TestFraction : 0, options.SplitSeed);
        if (goodVal is not null) validation = Samples(goodVal);
        if (goodTest is not null) test = Samples(goodTest);
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

    /// <summary>
    /// Per class, a seeded shuffle of the sorted files: the first round(n·validation) go to validation, the next
    /// round(n·test) to test, the rest to training, which keeps at least one. Validation comes first, so a test
    /// share leaves the validation set of the same seed as it was.
    /// </summary>
    private static (List<ImageSample> Train, List<ImageSample> Validation, List<ImageSample> Test) StratifiedSplit(
        List<List<string>> byClass, double validationFraction, double testFraction, int seed)
    {
        if (validationFraction is < 0 or >= 1)
            throw new InvalidDatasetException($"validation fraction {validationFraction.ToString(CultureInfo.InvariantCulture)} is not in [0, 1)");
        if (testFraction is < 0 or >= 1)
            throw new InvalidDatasetException($"test fraction {testFraction.ToString(CultureInfo.InvariantCulture)} is not in [0, 1)");
        if (validationFraction + testFraction >= 1)
            throw new InvalidDatasetException("the validation and test fractions leave nothing to train on: their sum must be below 1");
        var train = new List<ImageSample>();
        var validation = new List<ImageSample>();
        var test = new List<ImageSample>();
        for (int label = 0; label < byClass.Count; label++)
        {
            var files = byClass[label].ToArray();
            new Random(Training.Seeds.Mix(seed, label)).Shuffle(files);
            int held = Math.Max(0, files.Length - 1);
            int valCount = Math.Min(held, Share(files.Length, validationFraction));
            int testCount = Math.Min(held - valCount, Share(files.Length, testFraction));
            validation.AddRange(Labelled(files.Take(valCount), label));
            test.AddRange(Labelled(files.Skip(valCount).Take(testCount), label));
            train.AddRange(Labelled(files.Skip(valCount + testCount), label));
        }
        return (train, validation, test);
    }

    private static int Share(int count, double fraction) => (int)Math.Round(count * fraction, MidpointRounding.AwayFromZero);

    private static IEnumerable<ImageSample> Labelled(IEnumerable<string> files, int label) =>
        files.Order(StringComparer.Ordinal).Select(f => new ImageSample(f, label));

    private static List<ImageSample> Samples(List<List<string>> byClass) =>
        byClass.SelectMany((files, label) => files.Select(f => new ImageSample(f, label))).ToList();

    private static List<string> Scan(string root, List<string> files, DatasetOptions options, ConcurrentBag<SkippedFile> skipped, FittedImages? keep)
    {
        var good = new ConcurrentBag<string>();
        Parallel.ForEach(files, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, options.Parallelism) }, file =>
        {
            string? reason = Check(root, file, options, keep);
            if (reason is null) good.Add(file);
            else skipped.Add(new SkippedFile(file, reason));
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

    private static List<string> ClassFolders(string root) =>
        Directory.EnumerateDirectories(root).Select(Path.GetFileName).OfType<string>()
            .Where(name => !name.StartsWith('.')).Order(StringComparer.Ordinal).ToList();

    private static List<List<string>> FilesByClass(string root, List<string> classes) =>
        classes.Select(c => Directory.Exists(Path.Combine(root, c))
            ? Directory.EnumerateFiles(Path.Combine(root, c), "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal).ToList()
            : []).ToList();

    /// <summary>Unpacks a zip after checking entry count and expanded size, refusing entries that escape the folder.</summary>
    private static string Extract(string zip, DatasetOptions options, string destination)
    {
        try
        {
            return ExtractArchive(zip, options, destination);
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDatasetException($"{zip}: not a readable zip archive ({e.Message})");
        }
    }

    private static string ExtractArchive(string zip, DatasetOptions options, string destination)
    {
        using var archive = ZipFile.OpenRead(zip);
        if (archive.Entries.Count > options.MaxZipEntries)
            throw new InvalidDatasetException($"{zip}: {archive.Entries.Count} entries is over the {options.MaxZipEntries}-entry limit");
        if (archive.Entries.Sum(e => e.Length) > options.MaxExpandedBytes)
            throw new InvalidDatasetException($"{zip}: expands to more than the {options.MaxExpandedBytes}-byte limit");
        string root = Path.GetFullPath(destination) + Path.DirectorySeparatorChar;
        long written = 0;
        foreach (var entry in archive.Entries)
        {
            string target = Path.GetFullPath(Path.Combine(root, entry.FullName));
            if (!target.StartsWith(root, StringComparison.Ordinal))
                throw new InvalidDatasetException($"{zip}: entry '{entry.FullName}' points outside the archive");
            if (entry.FullName.EndsWith('/')) { Directory.CreateDirectory(target); continue; }
            // Unix mode in the high bits: an archived link is refused, never unpacked as a file or followed.
            if ((entry.ExternalAttributes >> 16 & 0xF000) == 0xA000)
                throw new InvalidDatasetException($"{zip}: entry '{entry.FullName}' is a symbolic link; a dataset holds image files");
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            using var input = entry.Open();
            using var output = File.Create(target);
            var buffer = new byte[1 << 16];
            for (int read; (read = input.Read(buffer)) > 0;)
            {
                // Headers can lie about sizes: count what really comes out.
                written += read;
                if (written > options.MaxExpandedBytes)
                    throw new InvalidDatasetException($"{zip}: expands to more than the {options.MaxExpandedBytes}-byte limit");
                output.Write(buffer, 0, read);
            }
        }
        // A zip of one top folder holding the classes is unpacked into that folder; a lone split folder
        // (train/) is not one: it stays a split folder, so it fails as it does unzipped.
        var top = Directory.GetDirectories(destination);
        return top.Length == 1 && Directory.GetFiles(destination).Length == 0 && ClassFolders(top[0]).Count > 0
            && Directory.GetFiles(top[0]).Length == 0 && DatasetSplits.Of(Path.GetFileName(top[0])) is null ? top[0] : destination;
    }
}
