using System.Text.Json;
using FineTune.Core;
using FineTune.Core.Data;
using FineTune.Core.Weights;

namespace FineTune.Workflow.Jobs;

/// <summary>
/// Where a job spec's local paths (a dataset folder, .zip or .csv; a weights file) may lead: anywhere when no root is set
/// (the machine's owner, <c>finetune train</c>), else only under the root, judged on the real path (every link in every
/// component followed, as the kernel follows them), so a link inside a root that points outside it is refused. A path
/// outside gets the same answer whether it exists or not. Checked when a spec is submitted and again by each activity
/// before it uses the path, since a path can be swapped for a link in between.
/// </summary>
public sealed class LocalPathPolicy
{
    public const string DatasetField = "dataset.location";
    public const string WeightsField = "weights.source";

    private readonly string? _datasetsRoot;
    private readonly string? _weightsRoot;

    /// <param name="datasetsRoot">the folder local datasets must be under; null: anywhere</param>
    /// <param name="weightsRoot">the folder local weight files must be under; null: anywhere</param>
    public LocalPathPolicy(string? datasetsRoot, string? weightsRoot)
    {
        _datasetsRoot = RootOf(datasetsRoot);
        _weightsRoot = RootOf(weightsRoot);
    }

    /// <summary>No root: every local path is allowed.</summary>
    public static LocalPathPolicy Unconfined { get; } = new(null, null);

    /// <summary>
    /// The spec's local paths outside their root, each named by its field: the dataset and weights, and a sweep's values
    /// for them. Empty when every path is allowed. The reason never says whether the path exists.
    /// </summary>
    public IReadOnlyList<FieldError> Check(JobSpec spec)
    {
        var errors = new List<FieldError>();
        void Require(string field, string? root, string kind, IEnumerable<string> paths)
        {
            if (Problem(field, root, kind, paths) is { } problem) errors.Add(problem);
        }
        Require(DatasetField, _datasetsRoot, "datasets", LocalDatasets(spec.Dataset.Location));
        Require(WeightsField, _weightsRoot, "weights", LocalWeights(spec.Weights.Source));
        if (spec.Sweep is { } sweep)
        {
            foreach (var (field, local) in new (string, Func<string, IEnumerable<string>>)[] { (DatasetField, LocalDatasets), (WeightsField, LocalWeights) })
            {
                if (!sweep.Parameters.TryGetValue(field, out var parameter) || parameter.Values is null) continue;
                var values = parameter.Values.Where(v => v.ValueKind == JsonValueKind.String).SelectMany(v => local(v.GetString()!));
                Require($"sweep.parameters.{field}", field == DatasetField ? _datasetsRoot : _weightsRoot, field == DatasetField ? "datasets" : "weights", values);
            }
        }
        return errors;
    }

    /// <summary>At use time: throws <see cref="InvalidJobSpecException"/> naming the field when a local dataset is outside its root.</summary>
    public void RequireDataset(string location) => Require(DatasetField, _datasetsRoot, "datasets", LocalDatasets(location));

    /// <summary>At use time: throws <see cref="InvalidJobSpecException"/> naming the field when a local weights file is outside its root.</summary>
    public void RequireWeights(string source) => Require(WeightsField, _weightsRoot, "weights", LocalWeights(source));

    private static void Require(string field, string? root, string kind, IEnumerable<string> paths)
    {
        if (Problem(field, root, kind, paths) is { } problem) throw new InvalidJobSpecException([problem]);
    }

    private static FieldError? Problem(string field, string? root, string kind, IEnumerable<string> paths) =>
        root is not null && paths.Any(p => !IsUnder(root, p))
            ? new FieldError(field, $"must be under the server's {kind} root (serve --{kind}-root): local paths elsewhere are refused")
            : null;

    private static IEnumerable<string> LocalDatasets(string location) =>
        BlobReference.IsBlob(location) || location.Length == 0 ? [] : [location];

    private static IEnumerable<string> LocalWeights(string source) => WeightsFetcher.IsLocalFile(source) ? [source] : [];

    private static string? RootOf(string? root) =>
        string.IsNullOrWhiteSpace(root) ? null : Path.TrimEndingDirectorySeparator(RealPath(root));

    private static bool IsUnder(string root, string path)
    {
        string real = RealPath(path);
        string withSeparator = Path.EndsInDirectorySeparator(root) ? root : root + Path.DirectorySeparatorChar;
        return real == root || real.StartsWith(withSeparator, StringComparison.Ordinal);
    }

    /// <summary>
    /// <paramref name="path"/> (relative to the current directory) with every link followed, as the kernel follows them
    /// (<see cref="DatasetPaths.RealPath"/>); from the first component that does not exist on, the rest as written.
    /// </summary>
    public static string RealPath(string path)
    {
        string current = Path.IsPathRooted(path) ? path : Path.Join(Directory.GetCurrentDirectory(), path);
        var missing = new Stack<string>();
        string? real;
        while ((real = DatasetPaths.RealPath(current)) is null)
        {
            if (Path.GetDirectoryName(current) is not { } parent) return Path.GetFullPath(current);
            if (Path.GetFileName(current) is { Length: > 0 } name) missing.Push(name);
            current = parent;
        }
        // Nothing past here exists, so no link can redirect it: "." and ".." apply as written.
        return missing.Count == 0 ? real : Path.GetFullPath(Path.Join([real, .. missing]));
    }
}
