namespace FineTune.Core.Data;

/// <summary>A CSV manifest of <c>path,label</c> lines with an optional third <c>split</c> column, paths relative to its folder.</summary>
public static class ManifestSource
{
    /// <summary>A manifest row: the path as written, the file it names (under the manifest's folder), its label and split.</summary>
    private sealed record ManifestRow(string Relative, string Path, string Label, string Split);

    /// <summary>
    /// The files a CSV manifest names, as written (relative to its folder), each checked to stay under that
    /// folder: what to fetch when the manifest is a blob.
    /// </summary>
    /// <param name="name">what the user calls the manifest, for errors</param>
    public static IReadOnlyList<string> Files(string csv, string name) =>
        ReadRows(csv, name).Select(r => Path.GetRelativePath(Path.GetDirectoryName(Path.GetFullPath(csv))!, r.Path)).Distinct().ToList();

    /// <param name="name">what the user calls the manifest: its files are named from its folder</param>
    internal static DatasetParts Read(string csv, string name)
    {
        var rows = ReadRows(csv, name);
        var classes = rows.Where(r => r.Split == DatasetSplits.Train).Select(r => r.Label).Distinct().Order(StringComparer.Ordinal).ToList();
        List<List<string>> ByClass(string split) =>
            classes.Select(c => rows.Where(r => r.Split == split && r.Label == c).Select(r => r.Path).ToList()).ToList();
        List<List<string>>? Given(string split)
        {
            var labels = rows.Where(r => r.Split == split).Select(r => r.Label).ToList();
            if (labels.Count == 0) return null;
            DatasetParts.RequireKnown($"{split} rows", labels, classes, "train rows");
            return ByClass(split);
        }
        string folder = Path.GetDirectoryName(Path.GetFullPath(csv))!;
        return new DatasetParts(folder, classes, ByClass(DatasetSplits.Train), Given(DatasetSplits.Validation), Given(DatasetSplits.Test),
            new DatasetNames(folder, name[..(name.LastIndexOf('/') + 1)]));
    }

    /// <summary>Every row, its path resolved under the manifest's folder: an absolute path or one leaving the folder is refused.</summary>
    private static List<ManifestRow> ReadRows(string csv, string name)
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
                throw new InvalidDatasetException($"{name}:{lineNumber}: expected 'path,label' or 'path,label,split', found {cells.Length} fields");
            string path = cells[0].Trim(), label = cells[1].Trim(), split = cells.Length == 3 ? cells[2].Trim() : "";
            if (lineNumber == 1 && path.Equals("path", StringComparison.OrdinalIgnoreCase)) continue;
            if (path.Length == 0 || label.Length == 0)
                throw new InvalidDatasetException($"{name}:{lineNumber}: empty path or label");
            // No split named: the row is a training image, as in a two-column manifest.
            string part = split.Length == 0 ? DatasetSplits.Train : DatasetSplits.Of(split)
                ?? throw new InvalidDatasetException($"{name}:{lineNumber}: '{split}' is not a split; use one of {DatasetSplits.AllAliases}");
            var (full, problem) = DatasetPaths.UnderFolder(baseDir, path);
            if (full is null)
                throw new InvalidDatasetException($"{name}:{lineNumber}: {problem}");
            // One file in two rows would be counted twice, or under two labels, or in two splits.
            if (!firstLine.TryAdd(full, lineNumber))
                throw new InvalidDatasetException($"{name}:{lineNumber}: '{path}' is already listed on line {firstLine[full]}");
            rows.Add(new ManifestRow(path, full, label, part));
        }
        return rows;
    }
}
