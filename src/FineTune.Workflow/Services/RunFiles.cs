using System.Collections.Concurrent;
using System.Security.Cryptography;
using FineTune.Core;
using System.Text.Json;
using FineTune.Core.Data;
using FineTune.Core.Engine;
using FineTune.Core.Weights;
using FineTune.Storage;
using FineTune.Storage.Checkpoints;
using FineTune.Workflow.Jobs;
using FineTune.Workflow.Orchestration;
using Microsoft.Extensions.Options;

namespace FineTune.Workflow.Services;

/// <summary>What an activity call works on, loaded in one call: the dataset, the recipe and, when cached, the features.</summary>
public sealed record ActivityInputs(ImageDataset Dataset, Recipe Recipe, IReadOnlyDictionary<string, byte[]>? Features)
{
    /// <summary>The images the scan decoded, kept fitted to the recipe's input when asked for and this call scanned.</summary>
    public FittedImages? Fitted { get; init; }
}

/// <summary>
/// What this worker keeps for the runs it serves, whichever activity lands on it: the pretrained weights and the
/// dataset (fetched from the artifact store once per worker) and the scanned dataset. <see cref="For"/> gives
/// one run's view.
/// </summary>
public sealed class WorkerFiles(IArtifactStore store, UserUploads uploads, CheckpointStore checkpoints, IOptions<WorkflowOptions> options, LocalPathPolicy paths)
{
    private readonly ConcurrentDictionary<string, Lazy<ImageDataset>> _datasets = new();
    // Local files this worker has hashed, with the length and write time they had: every activity call of a run loads the
    // weights, and hashing them again per call (63 MB for resnet18) cost more than a call's training.
    private readonly ConcurrentDictionary<string, (long Length, DateTime Written, string Sha256)> _hashed = new();
    private string Work => options.Value.WorkDirectory;

    public RunFiles For(FineTuneJob job) => new(this, store, checkpoints, job);

    /// <summary>
    /// The weights as a local file, fetched from the store when this worker has no copy. The copy is checked against
    /// the SHA-256 the fetch step verified when fetched and whenever its length or write time changes: a blob replaced
    /// in the store, or a local copy rewritten since, is never trained on (damage that keeps both is not looked for).
    /// </summary>
    internal async Task<string> WeightsPathAsync(WeightsRef weights, CancellationToken cancellationToken)
    {
        string path = Path.Combine(Work, weights.ArtifactName);
        if (File.Exists(path))
        {
            if (await LocalSha256Async(path, cancellationToken) == weights.Sha256) return path;
            File.Delete(path);
        }
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        string temp = path + ".incoming-" + Guid.NewGuid().ToString("N");
        try
        {
            await using (var input = await store.OpenReadAsync(weights.ArtifactName, cancellationToken))
            await using (var output = File.Create(temp))
                await input.CopyToAsync(output, cancellationToken);
            string actual = await Sha256Async(temp, cancellationToken);
            if (actual != weights.Sha256)
                throw new InvalidWeightsException(
                    $"{weights.ArtifactName} in the artifact store has SHA-256 {actual}, not the {weights.Sha256} fetched from {weights.Source}: it was replaced or damaged");
            File.Move(temp, path, overwrite: true);
            var moved = new FileInfo(path);
            _hashed[path] = (moved.Length, moved.LastWriteTimeUtc, actual);
        }
        finally
        {
            File.Delete(temp);
        }
        return path;
    }

    /// <summary>A local file's SHA-256, hashed again only when its length or write time changed since this worker hashed it.</summary>
    private async Task<string> LocalSha256Async(string path, CancellationToken cancellationToken)
    {
        var file = new FileInfo(path);
        if (_hashed.TryGetValue(path, out var known) && known.Length == file.Length && known.Written == file.LastWriteTimeUtc) return known.Sha256;
        // Length and time read before hashing: a write meanwhile makes the next call hash again.
        var hashed = (file.Length, file.LastWriteTimeUtc, await Sha256Async(path, cancellationToken));
        _hashed[path] = hashed;
        return hashed.Item3;
    }

    private static async Task<string> Sha256Async(string path, CancellationToken cancellationToken)
    {
        await using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(await SHA256.HashDataAsync(stream, cancellationToken));
    }

    /// <summary>
    /// The dataset, scanned once per worker and run; from the store into local scratch when it is a blob. The images
    /// the scan decodes go to <paramref name="keep"/> when this call is the one that scans.
    /// </summary>
    internal async Task<ImageDataset> DatasetAsync(FineTuneJob job, CancellationToken cancellationToken, FittedImages? keep = null)
    {
        string location = job.Spec.Dataset.Location;
        if (!location.StartsWith(WeightsFetcher.BlobPrefix, StringComparison.Ordinal))
        {
            // Checked where it is read: since the spec was submitted, the path may have become a link out of its root.
            paths.RequireDataset(location);
            return Checked(job, Scanned(job, location, keep));
        }
        string name = location[WeightsFetcher.BlobPrefix.Length..];
        try
        {
            return Checked(job, Scanned(job, await MaterialiseAsync(job.DataRunId, name, cancellationToken), keep));
        }
        catch (BadInputException e)
        {
            // The reason names files as the user does (blob names), never this worker's folders.
            throw new InvalidDatasetException(UserNames(job, e.Message));
        }
    }

    /// <summary>
    /// <paramref name="text"/> with this worker's copies of a store dataset's files named as the user named them:
    /// <c>blob:prefix/name</c>, or <c>blob:name.zip!/entry</c> inside a zip. A local dataset's paths are the user's own.
    /// </summary>
    internal string UserNames(FineTuneJob job, string text)
    {
        string location = job.Spec.Dataset.Location;
        if (!location.StartsWith(WeightsFetcher.BlobPrefix, StringComparison.Ordinal)) return text;
        string name = location[WeightsFetcher.BlobPrefix.Length..];
        string folder = name.EndsWith('/') ? name : name[..(name.LastIndexOf('/') + 1)];
        return text
            .Replace(UnzippedFolder(job.DataRunId) + "/", $"{location}!/", StringComparison.Ordinal)
            .Replace(DatasetFolder(job.DataRunId) + "/", WeightsFetcher.BlobPrefix + folder, StringComparison.Ordinal)
            .Replace(Work, "(worker)", StringComparison.Ordinal);
    }

    private string DatasetFolder(string jobId) => Path.Combine(Work, "runs", jobId, "dataset");

    private string UnzippedFolder(string jobId) => Path.Combine(Work, "runs", jobId, "unzipped");

    private ImageDataset Scanned(FineTuneJob job, string local, FittedImages? keep) =>
        _datasets.GetOrAdd($"{job.DataRunId}|{job.Spec.Dataset.Location}", _ => new Lazy<ImageDataset>(() =>
            DatasetLoader.Load(local, job.Spec.ToDatasetOptions(), UnzippedFolder(job.DataRunId), keep))).Value;

    private static ImageDataset Checked(FineTuneJob job, ImageDataset dataset)
    {
        if (job.Spec.Dataset.Classes is { } expected && !expected.SequenceEqual(dataset.Classes))
            throw new InvalidDatasetException($"the dataset's classes [{string.Join(", ", dataset.Classes)}] are not the job's [{string.Join(", ", expected)}]");
        return dataset;
    }

    /// <summary>
    /// A shard of cached features, from this worker's copy (kept by hash) or else fetched once from the store and
    /// verified: every chunk of a run needs all of them, and they can be gigabytes.
    /// </summary>
    internal async Task<byte[]> FeatureShardAsync(FeatureShardRef shard, CancellationToken cancellationToken)
    {
        string path = Path.Combine(Work, "features", shard.Sha256);
        if (File.Exists(path) && new FileInfo(path).Length == shard.Length) return await File.ReadAllBytesAsync(path, cancellationToken);
        byte[] data;
        await using (var input = await store.OpenReadAsync(shard.ArtifactName, cancellationToken))
        using (var buffer = new MemoryStream())
        {
            await input.CopyToAsync(buffer, cancellationToken);
            data = buffer.ToArray();
        }
        if (data.Length != shard.Length || Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(data)) != shard.Sha256)
            throw new InvalidDataException($"cached features {shard.ArtifactName} do not match their SHA-256 {shard.Sha256}: the preparation must run again");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        string temp = path + ".incoming-" + Guid.NewGuid().ToString("N");
        await File.WriteAllBytesAsync(temp, data, cancellationToken);
        File.Move(temp, path, overwrite: true);
        return data;
    }

    /// <summary>
    /// Copies a dataset from the users' uploads into local scratch, once: every blob under a prefix, one .zip, or a .csv with the
    /// blobs its rows name under the manifest's own prefix. Each name is checked before it becomes a local path.
    /// </summary>
    private async Task<string> MaterialiseAsync(string jobId, string name, CancellationToken cancellationToken)
    {
        string root = DatasetFolder(jobId);
        string done = Path.Combine(root, ".complete");
        bool single = !name.EndsWith('/');
        string target = single ? Path.Combine(root, Path.GetFileName(name)) : root;
        if (File.Exists(done)) return target;
        if (Directory.Exists(root)) Directory.Delete(root, recursive: true);
        Directory.CreateDirectory(root);
        if (single)
        {
            if (!await CopyBlobAsync(name, root, Path.GetFileName(name), cancellationToken))
                throw new InvalidDatasetException($"dataset blob '{name}' does not exist");
            if (Path.GetExtension(name).Equals(".csv", StringComparison.OrdinalIgnoreCase))
            {
                string folder = name[..(name.LastIndexOf('/') + 1)];
                // A row whose blob is missing stays missing: the scan reports it by name like any unusable file.
                foreach (var file in DatasetLoader.ManifestFiles(target))
                    await CopyBlobAsync(folder + file, root, file, cancellationToken);
            }
        }
        else
        {
            await foreach (var item in uploads.Store.ListAsync(name, cancellationToken))
                await CopyBlobAsync(item.Name, root, item.Name[name.Length..], cancellationToken);
        }
        await File.WriteAllTextAsync(done, name, cancellationToken);
        return target;
    }

    /// <summary>Copies blob <paramref name="name"/> to <paramref name="relative"/> under <paramref name="root"/>; false when there is no such blob.</summary>
    private async Task<bool> CopyBlobAsync(string name, string root, string relative, CancellationToken cancellationToken)
    {
        try
        {
            ArtifactNames.Require(name);
            ArtifactNames.Require(relative);
        }
        catch (ArgumentException e)
        {
            throw new InvalidDatasetException($"blob '{name}' cannot be part of a dataset: {e.Message.Split(" (Parameter", 2)[0]}");
        }
        string path = Path.Combine(root, relative);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        try
        {
            await using var input = await uploads.Store.OpenReadAsync(name, cancellationToken);
            await using var output = File.Create(path);
            await input.CopyToAsync(output, cancellationToken);
            return true;
        }
        catch (ArtifactNotFoundException)
        {
            File.Delete(path);
            return false;
        }
    }
}

/// <summary>One run's files: its inputs, checkpoints and artifacts (names from <see cref="Layout"/>).</summary>
public sealed class RunFiles
{
    private readonly WorkerFiles _worker;
    private readonly IArtifactStore _store;
    private readonly CheckpointStore _checkpoints;
    private readonly FineTuneJob _job;

    internal RunFiles(WorkerFiles worker, IArtifactStore store, CheckpointStore checkpoints, FineTuneJob job)
    {
        _worker = worker;
        _store = store;
        _checkpoints = checkpoints;
        _job = job;
        Layout = new RunLayout(job.JobId);
    }

    public RunLayout Layout { get; }

    /// <summary>A text naming dataset files (a path, a reason), with the files named as the user named them.</summary>
    public string UserNames(string text) => _worker.UserNames(_job, text);

    /// <summary>
    /// The dataset (its scan timed on <paramref name="clock"/> when given), the recipe with the weights as a local
    /// file, and the cached features when <paramref name="prepared"/> says there are some (null before they exist).
    /// With <paramref name="forFeaturePass"/>, when the recipe can train on cached features, the images the scan decodes
    /// are kept fitted to the recipe's input (<see cref="ActivityInputs.Fitted"/>) for the feature pass that follows.
    /// </summary>
    public async Task<ActivityInputs> LoadAsync(WeightsRef weights, PreparedSummary? prepared, CancellationToken cancellationToken, StageClock? clock = null,
        bool forFeaturePass = false)
    {
        var recipe = _job.Spec.ToRecipe(await _worker.WeightsPathAsync(weights, cancellationToken));
        var fitted = forFeaturePass && recipe.MayCacheFeatures ? new FittedImages(recipe.Preprocessing) : null;
        var dataset = await (clock ?? new StageClock()).TimeAsync(Stages.DatasetScan, () => _worker.DatasetAsync(_job, cancellationToken, fitted));
        var features = prepared is { UsesFeatureCache: true } ? await FeaturesAsync(prepared, cancellationToken) : null;
        return new ActivityInputs(dataset, recipe, features) { Fitted = fitted };
    }

    public async Task<TrainingState?> LatestStateAsync(CancellationToken cancellationToken) =>
        ToState(await _checkpoints.LoadLatestAsync(_job.JobId, cancellationToken));

    public async Task<TrainingState> StateAtAsync(long sequence, CancellationToken cancellationToken)
    {
        var (checkpoint, problem) = await _checkpoints.TryLoadAsync(_job.JobId, sequence, cancellationToken);
        return ToState(checkpoint) ?? throw new InvalidOperationException($"checkpoint {sequence} of run {_job.JobId} is not usable: {problem}");
    }

    public async Task<byte[]> ReadAllAsync(string name, CancellationToken cancellationToken)
    {
        await using var stream = await _store.OpenReadAsync(name, cancellationToken);
        using var buffer = new MemoryStream();
        await stream.CopyToAsync(buffer, cancellationToken);
        return buffer.ToArray();
    }

    public async Task WriteAsync(string name, byte[] data, WriteMode mode, CancellationToken cancellationToken)
    {
        using var stream = new MemoryStream(data, writable: false);
        await _store.WriteAsync(name, stream, mode, cancellationToken);
    }

    private async Task<IReadOnlyDictionary<string, byte[]>> FeaturesAsync(PreparedSummary prepared, CancellationToken cancellationToken)
    {
        var features = new Dictionary<string, byte[]>();
        foreach (var shard in prepared.FeatureShards)
            features[shard.Shard] = await _worker.FeatureShardAsync(shard, cancellationToken);
        return features;
    }

    private static TrainingState? ToState(LoadedCheckpoint? checkpoint) => checkpoint is null
        ? null
        : new TrainingState(checkpoint.Parts, checkpoint.Manifest.Metadata.Deserialize<Core.Training.TrainingProgress>(JobSpecReader.Json)!);
}
