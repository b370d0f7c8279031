using FineTune.Core;
using FineTune.Core.Data;
using FineTune.Storage;
using FineTune.Storage.Checkpoints;
using FineTune.Workflow.Jobs;
using FineTune.Workflow.Orchestration;
using Microsoft.Extensions.Options;

namespace FineTune.Workflow.Services;

/// <summary>
/// What this worker keeps for the runs it serves, whichever activity lands on it: the pretrained weights
/// (<see cref="WeightsCache"/>), the dataset (<see cref="DatasetCopy"/>, fetched from the users' uploads once per run),
/// the scanned dataset and the cached features (<see cref="FeatureShardCache"/>), the last three in the run's
/// <see cref="RunScratch"/>. <see cref="For"/> gives one run's view.
/// </summary>
public sealed class WorkerFiles
{
    private readonly IArtifactStore _store;
    private readonly CheckpointStore _checkpoints;
    private readonly RunScratch _scratch;
    private readonly WeightsCache _weights;
    private readonly DatasetCopy _copies;
    private readonly FeatureShardCache _features;
    private readonly long _maxExpandedBytes;
    private readonly LocalPathPolicy _paths;

    /// <summary><see cref="WorkflowOptions.DecodedImagesBytes"/>.</summary>
    internal long DecodedImagesBytes { get; }

    public WorkerFiles(IArtifactStore store, UserUploads uploads, CheckpointStore checkpoints, RunScratch scratch, IOptions<WorkflowOptions> options, LocalPathPolicy paths)
    {
        _paths = paths;
        _store = store;
        _checkpoints = checkpoints;
        _scratch = scratch;
        _weights = new WeightsCache(store, options.Value.WorkDirectory);
        _copies = new DatasetCopy(uploads);
        _features = new FeatureShardCache(store);
        _maxExpandedBytes = options.Value.MaxDatasetExpandedBytes;
        DecodedImagesBytes = options.Value.DecodedImagesBytes;
    }

    public RunFiles For(FineTuneJob job) => new(this, _store, _checkpoints, job);

    /// <summary>The weights as a local file (<see cref="WeightsCache"/>).</summary>
    internal Task<string> WeightsPathAsync(WeightsRef weights, CancellationToken cancellationToken) => _weights.PathAsync(weights, cancellationToken);

    /// <summary>A shard of cached features as a local file (<see cref="FeatureShardCache"/>), kept in the scratch of the run that computed them.</summary>
    internal Task<string> FeatureShardAsync(FineTuneJob job, FeatureShardRef shard, CancellationToken cancellationToken) =>
        _features.PathAsync(_scratch.FeaturesFolder(job.DataRunId), shard, cancellationToken);

    /// <summary>This worker's folder for the files the run publishes (<see cref="RunScratch.PublishFolder"/>).</summary>
    internal string PublishFolder(FineTuneJob job) => _scratch.PublishFolder(job.DataRunId);

    /// <summary>The images the run keeps across epochs on this worker when it trains on images (<see cref="RunScratch.KeptImages"/>).</summary>
    internal FittedImages? KeptImages(FineTuneJob job, Core.Models.Preprocessing preprocessing) => _scratch.KeptImages(job.DataRunId, preprocessing);

    /// <summary>Stores a shard the run just computed (<see cref="FeatureShardCache.StoreAsync"/>), keeping this worker's copy.</summary>
    internal Task<FeatureShardRef> StoreFeatureShardAsync(FineTuneJob job, string shard, string artifactName, Action<Stream> write, CancellationToken cancellationToken) =>
        _features.StoreAsync(_scratch.FeaturesFolder(job.DataRunId), shard, artifactName, write, cancellationToken);

    /// <summary>
    /// The dataset, scanned once per worker and run (a failed scan is not kept: the next call reads the dataset again); from
    /// the users' uploads into the run's scratch when it is a blob. The images the scan decodes go to <paramref name="keep"/>
    /// when this call is the one that scans. Files are named as the user names them (<see cref="ImageSample.Name"/>).
    /// </summary>
    internal async Task<ImageDataset> DatasetAsync(FineTuneJob job, CancellationToken cancellationToken, FittedImages? keep = null)
    {
        string location = job.Spec.Dataset.Location;
        string runId = job.DataRunId;
        var options = job.Spec.ToDatasetOptions() with { MaxExpandedBytes = _maxExpandedBytes };
        bool blob = BlobReference.IsBlob(location);
        // Checked where it is read: since the spec was submitted, the path may have become a link out of its root.
        if (!blob) _paths.RequireDataset(location);
        string local = blob
            ? await _copies.MaterialiseAsync(_scratch.DatasetFolder(runId), BlobReference.Name(location), cancellationToken)
            : location;
        var dataset = _scratch.Scanned(runId, location, () => DatasetLoader.Load(local, options, _scratch.UnzippedFolder(runId), keep, name: location));
        if (job.Spec.Dataset.Classes is { } expected && !expected.SequenceEqual(dataset.Classes))
            throw new InvalidDatasetException($"the dataset's classes [{string.Join(", ", dataset.Classes)}] are not the job's [{string.Join(", ", expected)}]");
        return dataset;
    }
}
