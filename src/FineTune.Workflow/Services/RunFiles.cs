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

/// <summary>
/// Gives activities the local files a run needs, whichever worker they land on: the pretrained weights and
/// the dataset (fetched from the artifact store once per worker), the scanned dataset, the cached features
/// and the latest checkpoint.
/// </summary>
public sealed class RunFiles(IArtifactStore store, CheckpointStore checkpoints, IOptions<WorkflowOptions> options)
{
    private readonly ConcurrentDictionary<string, Lazy<ImageDataset>> _datasets = new();
    private string Work => options.Value.WorkDirectory;

    /// <summary>The weights as a local file, fetched from the store when this worker has no copy.</summary>
    public async Task<string> WeightsPathAsync(WeightsRef weights, CancellationToken cancellationToken)
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
    public async Task<ImageDataset> DatasetAsync(FineTuneJob job, CancellationToken cancellationToken)
    {
        string location = job.Spec.Dataset.Location;
        string local = location.StartsWith(WeightsFetcher.BlobPrefix, StringComparison.Ordinal)
            ? await MaterialiseAsync(job.JobId, location[WeightsFetcher.BlobPrefix.Length..], cancellationToken)
            : location;
        var dataset = _datasets.GetOrAdd($"{job.JobId}|{location}", _ => new Lazy<ImageDataset>(() =>
            DatasetLoader.Load(local, job.Spec.ToDatasetOptions(), Path.Combine(Work, "runs", job.JobId, "unzipped")))).Value;
        if (job.Spec.Dataset.Classes is { } expected && !expected.SequenceEqual(dataset.Classes))
            throw new InvalidDatasetException($"the dataset's classes [{string.Join(", ", dataset.Classes)}] are not the job's [{string.Join(", ", expected)}]");
        return dataset;
    }

    public async Task<IReadOnlyDictionary<string, byte[]>?> FeaturesAsync(FineTuneJob job, PreparedSummary prepared, CancellationToken cancellationToken)
    {
        if (!prepared.FeatureCache) return null;
        var features = new Dictionary<string, byte[]>();
        string[] splits = prepared.TestImages > 0
            ? [DatasetSplits.Train, DatasetSplits.Validation, DatasetSplits.Test]
            : [DatasetSplits.Train, DatasetSplits.Validation];
        var layout = new RunLayout(job.JobId);
        foreach (var split in splits)
            features[split] = await ReadAllAsync(layout.FeaturesOf(split), cancellationToken);
        return features;
    }

    public async Task<TrainingState?> LatestStateAsync(FineTuneJob job, CancellationToken cancellationToken) =>
        ToState(await checkpoints.LoadLatestAsync(job.JobId, cancellationToken));

    public async Task<TrainingState> StateAtAsync(FineTuneJob job, long sequence, CancellationToken cancellationToken)
    {
        var (checkpoint, problem) = await checkpoints.TryLoadAsync(job.JobId, sequence, cancellationToken);
        return ToState(checkpoint) ?? throw new InvalidOperationException($"checkpoint {sequence} of run {job.JobId} is not usable: {problem}");
    }

    public async Task<byte[]> ReadAllAsync(string name, CancellationToken cancellationToken)
    {
        await using var stream = await store.OpenReadAsync(name, cancellationToken);
        using var buffer = new MemoryStream();
        await stream.CopyToAsync(buffer, cancellationToken);
        return buffer.ToArray();
    }

    public async Task WriteAsync(string name, byte[] data, WriteMode mode, CancellationToken cancellationToken)
    {
        using var stream = new MemoryStream(data, writable: false);
        await store.WriteAsync(name, stream, mode, cancellationToken);
    }

    private static TrainingState? ToState(LoadedCheckpoint? checkpoint) => checkpoint is null
        ? null
        : new TrainingState(checkpoint.Parts, checkpoint.Manifest.Metadata.Deserialize<Core.Training.TrainingProgress>(JobSpecReader.Json)!);

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
