using System.Collections.Concurrent;
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
public sealed record ActivityInputs(ImageDataset Dataset, Recipe Recipe, IReadOnlyDictionary<string, byte[]>? Features);

/// <summary>
/// What this worker keeps for the runs it serves, whichever activity lands on it: the pretrained weights and the
/// dataset (fetched from the artifact store once per worker) and the scanned dataset. <see cref="For"/> gives
/// one run's view.
/// </summary>
public sealed class WorkerFiles(IArtifactStore store, CheckpointStore checkpoints, IOptions<WorkflowOptions> options)
{
    private readonly ConcurrentDictionary<string, Lazy<ImageDataset>> _datasets = new();
    private string Work => options.Value.WorkDirectory;

    public RunFiles For(FineTuneJob job) => new(this, store, checkpoints, job);

    /// <summary>The weights as a local file, fetched from the store when this worker has no copy.</summary>
    internal async Task<string> WeightsPathAsync(WeightsRef weights, CancellationToken cancellationToken)
    {
        string path = Path.Combine(Work, weights.ArtifactName);
        if (File.Exists(path)) return path;
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        string temp = path + ".incoming-" + Guid.NewGuid().ToString("N");
        try
        {
            await using (var input = await store.OpenReadAsync(weights.ArtifactName, cancellationToken))
            await using (var output = File.Create(temp))
                await input.CopyToAsync(output, cancellationToken);
            File.Move(temp, path, overwrite: true);
        }
        finally
        {
            File.Delete(temp);
        }
        return path;
    }

    /// <summary>The dataset, scanned once per worker and run; from the store into local scratch when it is a blob.</summary>
    internal async Task<ImageDataset> DatasetAsync(FineTuneJob job, CancellationToken cancellationToken)
    {
        string location = job.Spec.Dataset.Location, run = job.DataRunId;
        string local = location.StartsWith(WeightsFetcher.BlobPrefix, StringComparison.Ordinal)
            ? await MaterialiseAsync(run, location[WeightsFetcher.BlobPrefix.Length..], cancellationToken)
            : location;
        var dataset = _datasets.GetOrAdd($"{run}|{location}", _ => new Lazy<ImageDataset>(() =>
            DatasetLoader.Load(local, job.Spec.ToDatasetOptions(), Path.Combine(Work, "runs", run, "unzipped")))).Value;
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

    /// <summary>Copies a blob dataset (one .zip/.csv, or every blob under a prefix) into local scratch, once.</summary>
    private async Task<string> MaterialiseAsync(string jobId, string name, CancellationToken cancellationToken)
    {
        string root = Path.Combine(Work, "runs", jobId, "dataset");
        string done = Path.Combine(root, ".complete");
        bool single = !name.EndsWith('/');
        string target = single ? Path.Combine(root, Path.GetFileName(name)) : root;
        if (File.Exists(done)) return target;
        if (Directory.Exists(root)) Directory.Delete(root, recursive: true);
        Directory.CreateDirectory(root);
        await foreach (var item in store.ListAsync(name, cancellationToken))
        {
            if (single && item.Name != name) continue;
            string path = single ? target : Path.Combine(root, item.Name[name.Length..]);
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            await using var input = await store.OpenReadAsync(item.Name, cancellationToken);
            await using var output = File.Create(path);
            await input.CopyToAsync(output, cancellationToken);
        }
        if (single && !File.Exists(target))
            throw new InvalidDatasetException($"dataset blob '{name}' does not exist in {store.Location}");
        await File.WriteAllTextAsync(done, name, cancellationToken);
        return target;
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

    /// <summary>
    /// The dataset (its scan timed on <paramref name="clock"/> when given), the recipe with the weights as a local
    /// file, and the cached features when <paramref name="prepared"/> says there are some (null before they exist).
    /// </summary>
    public async Task<ActivityInputs> LoadAsync(WeightsRef weights, PreparedSummary? prepared, CancellationToken cancellationToken, StageClock? clock = null)
    {
        var dataset = await (clock ?? new StageClock()).TimeAsync(Stages.DatasetScan, () => _worker.DatasetAsync(_job, cancellationToken));
        var recipe = _job.Spec.ToRecipe(await _worker.WeightsPathAsync(weights, cancellationToken));
        var features = prepared is { UsesFeatureCache: true } ? await FeaturesAsync(prepared, cancellationToken) : null;
        return new ActivityInputs(dataset, recipe, features);
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
