using System.Text.Json;
using FineTune.Core.Data;
using FineTune.Core.Engine;
using FineTune.Core.Training;
using FineTune.Storage;
using FineTune.Storage.Checkpoints;
using FineTune.Workflow.Jobs;
using FineTune.Workflow.Orchestration;

namespace FineTune.Workflow.Services;

/// <summary>What an activity call works on, loaded in one call: the dataset, the recipe and, when cached, the features.</summary>
public sealed record ActivityInputs(ImageDataset Dataset, Recipe Recipe, CachedFeatures? Features)
{
    /// <summary>The images the scan decoded, kept fitted to the recipe's input when asked for and this call scanned.</summary>
    public FittedImages? Fitted { get; init; }

    /// <summary>When the prepared run trains on images: the images it keeps across epochs on this worker.</summary>
    public FittedImages? KeptImages { get; init; }
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
    /// file, and the cached features when <paramref name="prepared"/> says there are some (null before they exist; the
    /// scored splits' alone when training runs on images).
    /// With <paramref name="forFeaturePass"/>, when the recipe can train on cached features, the images the scan decodes
    /// are kept fitted to the recipe's input (<see cref="ActivityInputs.Fitted"/>) for the feature pass that follows.
    /// </summary>
    public async Task<ActivityInputs> LoadAsync(WeightsRef weights, PreparedSummary? prepared, CancellationToken cancellationToken, StageClock? clock = null,
        bool forFeaturePass = false)
    {
        var recipe = _job.Spec.ToRecipe(await _worker.WeightsPathAsync(weights, cancellationToken));
        var fitted = forFeaturePass && recipe.MayCacheFeatures && _worker.DecodedImagesBytes > 0 ? new FittedImages(recipe.Preprocessing, _worker.DecodedImagesBytes) : null;
        var dataset = await (clock ?? new StageClock()).TimeAsync(Stages.DatasetScan, () => _worker.DatasetAsync(_job, cancellationToken, fitted));
        var features = prepared is { FeatureShards.Count: > 0 } ? await FeaturesAsync(prepared, cancellationToken) : null;
        var kept = prepared is { UsesFeatureCache: false } ? _worker.KeptImages(_job, recipe.Preprocessing) : null;
        return new ActivityInputs(dataset, recipe, features) { Fitted = fitted, KeptImages = kept };
    }

    public async Task<TrainingState?> LatestStateAsync(CancellationToken cancellationToken) =>
        ToState(await _checkpoints.LoadLatestAsync(_job.JobId, cancellationToken));

    public async Task<TrainingState> StateAtAsync(long sequence, CancellationToken cancellationToken)
    {
        var (checkpoint, problem) = await _checkpoints.TryLoadAsync(_job.JobId, sequence, cancellationToken);
        return ToState(checkpoint) ?? throw new InvalidOperationException($"checkpoint {sequence} of run {_job.JobId} is not usable: {problem}");
    }

    public async Task WriteAsync(string name, byte[] data, WriteMode mode, CancellationToken cancellationToken)
    {
        using var stream = new MemoryStream(data, writable: false);
        await _store.WriteAsync(name, stream, mode, cancellationToken);
    }

    public Task WriteAsync(string name, Stream data, WriteMode mode, CancellationToken cancellationToken) =>
        _store.WriteAsync(name, data, mode, cancellationToken);

    /// <summary>A stored artifact's bytes: for small ones (a head's weights).</summary>
    public async Task<byte[]> ReadAsync(string name, CancellationToken cancellationToken)
    {
        await using var stream = await _store.OpenReadAsync(name, cancellationToken);
        using var copy = new MemoryStream();
        await stream.CopyToAsync(copy, cancellationToken);
        return copy.ToArray();
    }

    /// <summary>The SHA-256 of a stored artifact, read as a stream.</summary>
    public async Task<string> Sha256Async(string name, CancellationToken cancellationToken)
    {
        await using var stream = await _store.OpenReadAsync(name, cancellationToken);
        return Convert.ToHexStringLower(await System.Security.Cryptography.SHA256.HashDataAsync(stream, cancellationToken));
    }

    /// <summary>A new folder in this worker's scratch for the files one publish attempt writes; the caller deletes it.</summary>
    public string NewPublishFolder() =>
        Directory.CreateDirectory(Path.Combine(_worker.PublishFolder(_job), Guid.NewGuid().ToString("N"))).FullName;

    private async Task<CachedFeatures> FeaturesAsync(PreparedSummary prepared, CancellationToken cancellationToken)
    {
        var files = new Dictionary<string, string>();
        foreach (var shard in prepared.FeatureShards)
            files[shard.Shard] = await _worker.FeatureShardAsync(_job, shard, cancellationToken);
        return CachedFeatures.FromFiles(files);
    }

    /// <summary>Stores a shard of the features this run's preparation computed, as <see cref="RunLayout.FeaturesOf"/>.</summary>
    public Task<FeatureShardRef> StoreFeatureShardAsync(CachedFeatures features, string shard, CancellationToken cancellationToken) =>
        _worker.StoreFeatureShardAsync(_job, shard, Layout.FeaturesOf(shard), stream => features.WriteShard(shard, stream), cancellationToken);

    private static TrainingState? ToState(LoadedCheckpoint? checkpoint) => checkpoint is null
        ? null
        : new TrainingState(checkpoint.Parts, checkpoint.Manifest.Metadata.Deserialize<Core.Training.TrainingProgress>(WireJson.Options)!);
}
