using System.Collections.Concurrent;
using System.Globalization;
using System.IO.Compression;

namespace FineTune.Core.Data;

/// <summary>
/// Reads a labelled image dataset: an ImageFolder tree (one folder per class; with <c>train/</c> and
/// <c>val/</c> when the split is given), the same as a .zip, or a CSV manifest of <c>path,label</c> lines.
/// Every file is checked and decoded once here, so training never meets a bad file.
/// </summary>
public static class DatasetLoader
{
    private const int NamedInErrors = 5;

    /// <param name="location">a folder, a .zip or a .csv</param>
    /// <param name="extractTo">where a .zip is unpacked (a fresh temporary folder when null)</param>
    public static ImageDataset Load(string location, DatasetOptions options, string? extractTo = null)
    {
        if (Directory.Exists(location)) return FromFolder(location, options);
        if (!File.Exists(location))
            throw new InvalidDatasetException($"dataset '{location}' does not exist");
        return Path.GetExtension(location).ToLowerInvariant() switch
        {
            ".zip" => FromFolder(Extract(location, options, extractTo ?? Directory.CreateTempSubdirectory("dataset-").FullName), options),
            ".csv" => FromManifest(location, options),
            _ => throw new InvalidDatasetException($"dataset '{location}' is neither a folder, a .zip nor a .csv manifest"),
        };
    }

    private static ImageDataset FromFolder(string root, DatasetOptions options)
    {
        string train = Path.Combine(root, "train"), val = Path.Combine(root, "val");
        bool explicitSplit = Directory.Exists(train) && Directory.Exists(val);
        var classes = ClassFolders(explicitSplit ? train : root);
        if (explicitSplit)
        {
            var extra = ClassFolders(val).Except(classes).ToList();
            if (extra.Count > 0)
                throw new InvalidDatasetException($"val/ has classes that train/ lacks: {string.Join(", ", extra)}");
        }
        var trainFiles = FilesByClass(explicitSplit ? train : root, classes);
        var valFiles = explicitSplit ? FilesByClass(val, classes) : [];
        return Build(classes, trainFiles, valFiles, explicitSplit, options);
    }

    private static ImageDataset FromManifest(string csv, DatasetOptions options)
    {
        string baseDir = Path.GetDirectoryName(Path.GetFullPath(csv))!;
        var rows = new List<(string Path, string Label)>();
        int lineNumber = 0;
        foreach (var line in File.ReadLines(csv))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            var cells = line.Split(',');
            if (cells.Length != 2)
                throw new InvalidDatasetException($"{csv}:{lineNumber}: expected 'path,label', found {cells.Length} fields");
            string path = cells[0].Trim(), label = cells[1].Trim();
            if (lineNumber == 1 && path.Equals("path", StringComparison.OrdinalIgnoreCase)) continue;
            if (path.Length == 0 || label.Length == 0)
                throw new InvalidDatasetException($"{csv}:{lineNumber}: empty path or label");
            rows.Add((Path.GetFullPath(Path.Combine(baseDir, path)), label));
        }
        var classes = rows.Select(r => r.Label).Distinct().Order(StringComparer.Ordinal).ToList();
        var files = classes.Select(c => rows.Where(r => r.Label == c).Select(r => r.Path).ToList()).ToList();
        return Build(classes, files, [], explicitSplit: false, options);
    }

    private static ImageDataset Build(List<string> classes, List<List<string>> trainFiles, List<List<string>> valFiles,
        bool explicitSplit, DatasetOptions options)
    {
        if (classes.Count == 0)
            throw new InvalidDatasetException("the dataset is empty: no class folders (one folder per class) or labels");
        var skipped = new ConcurrentBag<SkippedFile>();
        var goodTrain = trainFiles.Select(files => Scan(files, options, skipped)).ToList();
        var goodVal = valFiles.Select(files => Scan(files, options, skipped)).ToList();

        int total = trainFiles.Sum(f => f.Count) + valFiles.Sum(f => f.Count);
        var skippedList = skipped.OrderBy(s => s.Path, StringComparer.Ordinal).ToList();
        if (total == 0)
            throw new InvalidDatasetException("the dataset is empty: no image files");
        if (skippedList.Count > options.MaxBadFraction * total)
            throw new InvalidDatasetException(
                $"{skippedList.Count} of {total} files cannot be used, over the {options.MaxBadFraction:P0} allowed: " +
                string.Join("; ", skippedList.Take(NamedInErrors).Select(s => $"{s.Path}: {s.Reason}")));
        var empty = classes.Where((_, i) => goodTrain[i].Count + (explicitSplit ? goodVal[i].Count : 0) == 0).ToList();
        if (empty.Count > 0)
            throw new InvalidDatasetException($"classes with no usable images: {string.Join(", ", empty)}");
        if (classes.Count < 2)
            throw new InvalidDatasetException($"only one class ({classes[0]}): a classifier needs at least two");

        List<ImageSample> train, validation;
        if (explicitSplit)
        {
            train = Samples(goodTrain);
            validation = Samples(goodVal);
        }
        else
        {
            (train, validation) = StratifiedSplit(goodTrain, options.ValidationFraction, options.SplitSeed);
        }
        if (validation.Count == 0)
            throw new InvalidDatasetException("the validation set is empty: add a val/ folder, or use a validation fraction above 0 with at least two images per class");
        return new ImageDataset(classes, train, validation, skippedList);
    }

    /// <summary>Per class, a seeded shuffle of the sorted files; round(n·fraction) go to validation, keeping at least one for training.</summary>
    private static (List<ImageSample>, List<ImageSample>) StratifiedSplit(List<List<string>> byClass, double fraction, int seed)
    {
        if (fraction is < 0 or >= 1)
            throw new InvalidDatasetException($"validation fraction {fraction.ToString(CultureInfo.InvariantCulture)} is not in [0, 1)");
        var train = new List<ImageSample>();
        var validation = new List<ImageSample>();
        for (int label = 0; label < byClass.Count; label++)
        {
            var files = byClass[label].ToArray();
            new Random(Training.Seeds.Mix(seed, label)).Shuffle(files);
            int valCount = Math.Min(files.Length - 1, (int)Math.Round(files.Length * fraction, MidpointRounding.AwayFromZero));
            validation.AddRange(files.Take(valCount).Order(StringComparer.Ordinal).Select(f => new ImageSample(f, label)));
            train.AddRange(files.Skip(valCount).Order(StringComparer.Ordinal).Select(f => new ImageSample(f, label)));
        }
        return (train, validation);
    }

    private static List<ImageSample> Samples(List<List<string>> byClass) =>
        byClass.SelectMany((files, label) => files.Select(f => new ImageSample(f, label))).ToList();

    private static List<string> Scan(List<string> files, DatasetOptions options, ConcurrentBag<SkippedFile> skipped)
    {
        var good = new ConcurrentBag<string>();
        Parallel.ForEach(files, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, options.Parallelism) }, file =>
        {
            string? reason = Check(file, options);
            if (reason is null) good.Add(file);
            else skipped.Add(new SkippedFile(file, reason));
        });
        return good.Order(StringComparer.Ordinal).ToList();
    }

    private static string? Check(string file, DatasetOptions options)
    {
        try
        {
            long length = new FileInfo(file).Length;
            if (length == 0) return "empty file";
            if (length > options.MaxFileBytes) return $"{length} bytes is over the {options.MaxFileBytes}-byte limit";
            ImageLoader.Decode(file, options.MaxPixels);
            return null;
        }
        catch (InvalidImageException e)
        {
            return e.Reason;
        }
        catch (IOException e)
        {
            return $"unreadable: {e.Message}";
        }
        catch (UnauthorizedAccessException e)
        {
            return $"unreadable: {e.Message}";
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
        // A zip of one top folder holding the classes is unpacked into that folder.
        var top = Directory.GetDirectories(destination);
        return top.Length == 1 && Directory.GetFiles(destination).Length == 0 && ClassFolders(top[0]).Count > 0
            && Directory.GetFiles(top[0]).Length == 0 ? top[0] : destination;
    }
}
