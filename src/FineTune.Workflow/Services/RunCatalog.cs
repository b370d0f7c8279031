using System.Text.Json;
using FineTune.Core.Training;
using FineTune.Storage;
using FineTune.Storage.Checkpoints;
using FineTune.Workflow.Activities;
using FineTune.Workflow.Jobs;

namespace FineTune.Workflow.Services;

/// <summary>A run as its artifacts tell it, whatever durable backend ran it (or whether it is still running).</summary>
/// <param name="FirstWritten">when its oldest stored file was written: about when it started</param>
/// <param name="LastWritten">when its newest stored file was written</param>
public sealed record RunSummary(
    string JobId,
    string State,
    int EpochsDone,
    EpochMetrics? LastEpoch,
    string? PublishedModel,
    double? Top1Accuracy,
    DateTimeOffset FirstWritten,
    DateTimeOffset LastWritten);

/// <summary>
/// Reads runs back from the artifact store: for <c>finetune status</c> and <c>list</c>, and for the API's runs that its own
/// durable backend never held (another process's, on the same store).
/// </summary>
public sealed class RunCatalog(IArtifactStore store, CheckpointStore checkpoints)
{
    public async Task<IReadOnlyList<string>> JobIdsAsync(CancellationToken cancellationToken)
    {
        var ids = new SortedSet<string>(StringComparer.Ordinal);
        await foreach (var item in store.ListAsync(RunLayout.RunsPrefix, cancellationToken))
        {
            if (RunLayout.JobIdOf(item.Name) is { } id) ids.Add(id);
        }
        return ids.ToList();
    }

    /// <summary>null when the store has nothing of that run.</summary>
    public async Task<RunSummary?> DescribeAsync(string jobId, CancellationToken cancellationToken)
    {
        var latest = await checkpoints.LoadLatestAsync(jobId, cancellationToken);
        // A sweep's stack of trials checkpoints its members' progress, a list: it is not a run of its own.
        var progress = latest?.Manifest.Metadata is { ValueKind: JsonValueKind.Object } metadata ? metadata.Deserialize<TrainingProgress>(WireJson.Options) : null;
        var layout = new RunLayout(jobId);
        string card = layout.ModelCard;
        bool published = await store.ExistsAsync(card, cancellationToken);
        double? accuracy = null;
        if (published)
        {
            await using var stream = await store.OpenReadAsync(card, cancellationToken);
            using var buffer = new MemoryStream();
            await stream.CopyToAsync(buffer, cancellationToken);
            accuracy = ModelCard.Read(buffer.ToArray(), card).Metrics?.Top1Accuracy;
        }
        bool prepared = await store.ExistsAsync(layout.DatasetReport, cancellationToken);
        if (!published && progress is null && !prepared) return null;
        string state = published ? "published" : progress is not null ? "training" : "prepared";
        DateTimeOffset first = DateTimeOffset.MaxValue, last = DateTimeOffset.MinValue;
        await foreach (var item in store.ListAsync(layout.Root, cancellationToken))
        {
            if (item.LastModified < first) first = item.LastModified;
            if (item.LastModified > last) last = item.LastModified;
        }
        return new RunSummary(jobId, state, progress?.History.Count ?? 0, progress?.History is [.., var lastEpoch] ? lastEpoch : null,
            published ? layout.Safetensors : null, accuracy, first, last);
    }
}
