using System.Collections.Concurrent;
using FineTune.Core.Data;
using FineTune.Core.Models;
using Microsoft.Extensions.Options;

namespace FineTune.Workflow.Services;

/// <summary>
/// What this worker holds for one run, and nothing outlives the run: its scratch folder (<c>runs/{id}</c> under the work
/// directory: the dataset copied from the uploads, the unpacked .zip, the cached feature shards) and its scanned dataset.
/// <see cref="Release"/> removes both, when the run ends, is restarted or purged. Weights are shared by hash between runs
/// (<see cref="WeightsCache"/>) and stay.
/// </summary>
public sealed class RunScratch(IOptions<WorkflowOptions> options)
{
    // Only scans that succeeded: a failed one is read again by the next call, so a restart after a fix sees the fix.
    private readonly ConcurrentDictionary<string, Lazy<ImageDataset>> _scans = new();

    private string Work => options.Value.WorkDirectory;

    /// <summary>The run's scratch folder on this worker.</summary>
    public string Folder(string runId) => Path.Combine(Work, "runs", runId);

    internal string DatasetFolder(string runId) => Path.Combine(Folder(runId), "dataset");

    internal string UnzippedFolder(string runId) => Path.Combine(Folder(runId), "unzipped");

    internal string FeaturesFolder(string runId) => Path.Combine(Folder(runId), "features");

    /// <summary>Where the publish step writes a model's files before storing them: too large for memory at 2.5 GB.</summary>
    internal string PublishFolder(string runId) => Path.Combine(Folder(runId), "publish");

    /// <summary>The run's dataset, scanned by <paramref name="scan"/> once per run on this worker, unless the scan fails.</summary>
    internal ImageDataset Scanned(string runId, string location, Func<ImageDataset> scan)
    {
        string key = $"{runId}|{location}";
        var lazy = _scans.GetOrAdd(key, _ => new Lazy<ImageDataset>(scan));
        try
        {
            return lazy.Value;
        }
        catch
        {
            _scans.TryRemove(new KeyValuePair<string, Lazy<ImageDataset>>(key, lazy));
            throw;
        }
    }

    private readonly ConcurrentDictionary<string, FittedImages> _keptImages = new();

    /// <summary>
    /// The images a run training on images (no feature cache) keeps across its epochs on this worker, fitted to
    /// <paramref name="preprocessing"/>, within <see cref="WorkflowOptions.DecodedImagesBytes"/>; null when that is 0.
    /// </summary>
    internal FittedImages? KeptImages(string runId, Preprocessing preprocessing)
    {
        long budget = options.Value.DecodedImagesBytes;
        if (budget <= 0) return null;
        return _keptImages.AddOrUpdate(runId, _ => New(), (_, kept) => kept.Preprocessing == preprocessing ? kept : New());
        FittedImages New() => new(preprocessing, budget, keptAcrossEpochs: true);
    }

    /// <summary>Forgets the run's scanned dataset and kept images, and removes its scratch folder on this worker.</summary>
    public void Release(string runId)
    {
        foreach (var key in _scans.Keys.Where(k => k.StartsWith(runId + "|", StringComparison.Ordinal)))
            _scans.TryRemove(key, out _);
        _keptImages.TryRemove(runId, out _);
        // Only ever one folder under runs/, whatever the id.
        if (runId.Length == 0 || runId != Path.GetFileName(runId) || runId is "." or "..") return;
        string folder = Folder(runId);
        if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
    }
}
