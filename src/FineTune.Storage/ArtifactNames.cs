using System.Text.RegularExpressions;

namespace FineTune.Storage;

/// <summary>
/// The names artifacts may have (a run's own names are <see cref="RunLayout"/>'s). Names are checked before any storage call, so no
/// job id or blob name from a request can reach outside the configured container or folder.
/// </summary>
public static partial class ArtifactNames
{
    public const int MaxLength = 512;

    /// <summary>
    /// What a job id may be, as every refusal says it. Names people type (<c>mobilenet_v2.pets-1</c>) are valid in URLs,
    /// blob names, folder names and Durable instance ids; starting and ending with a letter or digit keeps out '.', '..'
    /// and hidden folders, and no '/', ':' or upper case means no path, no clash with sub-orchestration ids
    /// (<c>id:r1</c>) and no two ids for one folder on a case-insensitive disk.
    /// </summary>
    public const string JobIdRule = "must be 1-63 lower-case letters, digits, '-', '_' or '.', starting and ending with a letter or digit";

    public static bool IsValidJobId(string? jobId) => jobId is not null && JobId().IsMatch(jobId);

    public static string RequireJobId(string? jobId) => IsValidJobId(jobId)
        ? jobId!
        : throw new ArgumentException($"job id '{jobId}' {JobIdRule}", nameof(jobId));

    /// <summary>
    /// Throws unless every '/'-separated segment is a file name users give (<c>IMG_0001 (1).png</c>): not empty,
    /// '.' or '..', without '' or control characters. Such a name stays inside its container or folder.
    /// </summary>
    public static string Require(string? name)
    {
        if (string.IsNullOrEmpty(name) || name.Length > MaxLength)
            throw new ArgumentException($"artifact name must be 1-{MaxLength} characters", nameof(name));
        foreach (var segment in name.Split('/'))
        {
            if (segment is "" or "." or ".." || segment.Any(c => c == '\\' || char.IsControl(c)))
                throw new ArgumentException($"artifact name '{name}' is not allowed: segments are never empty, '.' or '..' and hold no '\\' or control characters", nameof(name));
        }
        return name;
    }

    /// <summary>A prefix to list by: a valid name, optionally ending in '/', or empty for everything.</summary>
    public static string RequirePrefix(string prefix) =>
        prefix.Length == 0 ? prefix : Require(prefix.TrimEnd('/')) + (prefix.EndsWith('/') ? "/" : "");

    /// <summary>Imported pretrained weights, by content hash, shared by all runs.</summary>
    public static string Weights(string sha256) => Require($"weights/{sha256}");

    /// <summary>A dataset .zip uploaded through the HTTP API, by content hash: the same upload is stored once.</summary>
    public static string UploadedDataset(string sha256) => Require($"{UploadedDatasets}{sha256}.zip");

    /// <summary>Whether <paramref name="name"/> is an upload the service named (<see cref="UploadedDataset"/>), not a user's own blob.</summary>
    public static bool IsUploadedDataset(string name) =>
        name.StartsWith(UploadedDatasets, StringComparison.Ordinal) && name.EndsWith(".zip", StringComparison.Ordinal)
        && name[UploadedDatasets.Length..^4] is { Length: 64 } sha256 && sha256.All(char.IsAsciiHexDigitLower);

    private const string UploadedDatasets = "datasets/uploads/";

    [GeneratedRegex("^[a-z0-9](?:[a-z0-9._-]{0,61}[a-z0-9])?$")]
    private static partial Regex JobId();
}
