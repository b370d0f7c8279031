namespace FineTune.Core.Data;

/// <summary>
/// What a dataset source (<see cref="FolderSource"/>, <see cref="ManifestSource"/>) found, before any file is read: per class
/// (index = label), the files training draws from, and the validation and test files when the dataset gives them
/// (null: carved from <see cref="Pool"/>).
/// </summary>
/// <param name="Root">the folder every file must resolve into</param>
/// <param name="Names">what the user calls each file</param>
internal sealed record DatasetParts(string Root, List<string> Classes, List<List<string>> Pool, List<List<string>>? Validation, List<List<string>>? Test,
    DatasetNames Names)
{
    public static void RequireKnown(string part, IEnumerable<string> found, List<string> classes, string trainPart)
    {
        var extra = found.Distinct().Except(classes).Order(StringComparer.Ordinal).ToList();
        if (extra.Count > 0)
            throw new InvalidDatasetException($"{part} has classes that {trainPart} lacks: {string.Join(", ", extra)}");
    }
}

/// <summary>
/// A file's name as the user gives it: <see cref="Prefix"/> (the user's name of the folder <see cref="Folder"/>, with its
/// slash) and the file's path under that folder.
/// </summary>
public sealed record DatasetNames(string Folder, string Prefix)
{
    /// <summary>Files under <paramref name="folder"/>, a folder the user calls <paramref name="name"/>.</summary>
    public static DatasetNames Under(string folder, string name) => new(folder, name.EndsWith('/') ? name : name + "/");

    public string Of(string path) => Prefix + Path.GetRelativePath(Folder, path);
}
