namespace FineTune.Core.Data;

/// <summary>
/// An ImageFolder tree: one folder per class, or a split dataset (a training folder plus validation and/or test folders,
/// each of class folders).
/// </summary>
internal static class FolderSource
{
    /// <param name="names">what the user calls the files under <paramref name="root"/></param>
    public static DatasetParts Read(string root, DatasetNames names)
    {
        var splitFolders = ClassFolders(root).Where(name => DatasetSplits.Of(name) is not null).ToList();
        if (splitFolders.Count == 0)
        {
            var all = ClassFolders(root);
            return new DatasetParts(root, all, FilesByClass(root, all), null, null, names);
        }
        var layout = SplitLayout(splitFolders);
        string train = layout[DatasetSplits.Train];
        var classes = ClassFolders(Path.Combine(root, train));
        if (classes.Count == 0)
            throw new InvalidDatasetException($"{train}/ has no class folders: each split folder holds one folder per class");
        List<List<string>>? Given(string split)
        {
            if (!layout.TryGetValue(split, out var folder)) return null;
            DatasetParts.RequireKnown($"{folder}/", ClassFolders(Path.Combine(root, folder)), classes, $"{train}/");
            return FilesByClass(Path.Combine(root, folder), classes);
        }
        return new DatasetParts(root, classes, FilesByClass(Path.Combine(root, train), classes), Given(DatasetSplits.Validation), Given(DatasetSplits.Test), names);
    }

    /// <summary>The folders under <paramref name="root"/> that may be classes (hidden ones never are), sorted.</summary>
    public static List<string> ClassFolders(string root) =>
        Directory.EnumerateDirectories(root).Select(Path.GetFileName).OfType<string>()
            .Where(name => !name.StartsWith('.')).Order(StringComparer.Ordinal).ToList();

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

    private static List<List<string>> FilesByClass(string root, List<string> classes) =>
        classes.Select(c => Directory.Exists(Path.Combine(root, c))
            ? Directory.EnumerateFiles(Path.Combine(root, c), "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal).ToList()
            : []).ToList();
}
