namespace FineTune.Core;

/// <summary>
/// How a job names an artifact of the configured store instead of a local path or URL: <c>blob:NAME</c>, for
/// datasets and weights alike.
/// </summary>
public static class BlobReference
{
    public const string Prefix = "blob:";

    /// <summary>The syntax as messages and help texts show it.</summary>
    public const string Syntax = Prefix + "NAME";

    public static bool IsBlob(string? location) => location is not null && location.StartsWith(Prefix, StringComparison.Ordinal);

    /// <summary>The artifact name a reference names; throws where the location is not a blob reference.</summary>
    public static string Name(string location) =>
        IsBlob(location) ? location[Prefix.Length..] : throw new ArgumentException($"'{location}' is not a {Syntax} reference", nameof(location));

    /// <summary>The reference to an artifact name.</summary>
    public static string To(string name) => Prefix + name;
}
