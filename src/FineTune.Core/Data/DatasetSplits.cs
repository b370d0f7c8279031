namespace FineTune.Core.Data;

/// <summary>
/// The parts of a dataset, and the names each goes by in a split dataset's top-level folders or a manifest's
/// <c>split</c> column: the aliases common datasets use, matched case-insensitively.
/// </summary>
public static class DatasetSplits
{
    public const string Train = "train";
    public const string Validation = "validation";
    public const string Test = "test";

    private static readonly (string Split, string[] Aliases)[] Names =
    [
        (Train, ["train", "training"]),
        (Validation, ["val", "valid", "validation", "dev"]),
        (Test, ["test", "testing", "eval"]),
    ];

    /// <summary>The aliases of <paramref name="split"/> as folders, for error messages: "val/, valid/, …".</summary>
    public static string Folders(string split) => string.Join(", ", Names.Single(n => n.Split == split).Aliases.Select(a => a + "/"));

    /// <summary>Every alias, for error messages.</summary>
    public static string AllAliases => string.Join(", ", Names.SelectMany(n => n.Aliases));

    /// <summary>The split a folder name or manifest cell stands for; null when it names none.</summary>
    public static string? Of(string name) =>
        Names.FirstOrDefault(n => n.Aliases.Contains(name, StringComparer.OrdinalIgnoreCase)).Split;
}
