using System.Collections.Concurrent;
using System.Text.Json;
using FineTune.Core.Training;
using FineTune.Storage;
using FineTune.Storage.Checkpoints;
using FineTune.Workflow.Activities;
using FineTune.Workflow.Jobs;
using FineTune.Workflow.Orchestration;

namespace FineTune.Workflow.Services;

/// <summary>A run as its artifacts tell it, whatever durable backend ran it (or whether it is still running).</summary>
/// <param name="State">one of <see cref="RunCatalog.Published"/>, <see cref="RunCatalog.Training"/>, <see cref="RunCatalog.Prepared"/></param>
/// <param name="PublishedModel">its published weights; a sweep's are its best trial's</param>
/// <param name="FirstWritten">when its oldest stored file was written: about when it started</param>
/// <param name="LastWritten">when its newest stored file was written</param>
/// <param name="PartOf">the sweep whose internal run this is (<see cref="BoundSpec.Sweep"/>): lists show the sweep, not it</param>
/// <param name="Trials">a sweep's trials; null for a run</param>
/// <param name="Sweep">a sweep's progress as its custom status has it: trials done and running, its best trial once reported</param>
public sealed record RunSummary(
    string JobId,
    string State,
    int EpochsDone,
    EpochMetrics? LastEpoch,
    string? PublishedModel,
    double? Top1Accuracy,
    DateTimeOffset FirstWritten,
    DateTimeOffset LastWritten,
    string? PartOf = null,
    IReadOnlyList<TrialProgress>? Trials = null,
    SweepProgress? Sweep = null);

/// <summary>
/// Reads runs back from the artifact store: for <c>finetune status</c> and <c>list</c>, and for the API's runs that its own
/// durable backend never held (another process's, on the same store).
/// </summary>
public sealed class RunCatalog(IArtifactStore store, CheckpointStore checkpoints)
{
    public const string Published = "published";
    public const string Training = "training";
    public const string Prepared = "prepared";

    /// <summary>
    /// The metrics files remembered, by their stored size: a 1,000-trial sweep of 100 epochs is ~16 MB of them. The catalog
    /// lives as long as the process (the API's, the Functions app's), so sweeps long finished must not stay in memory.
    /// </summary>
    private const long MaxEpochBytesRemembered = 32L << 20;

    /// <summary>
    /// Trials' metrics.jsonl as last read, by their size and time: a poll reads only the files that changed. Size and time
    /// are enough: each rewrite adds an epoch's line, so a changed file is longer.
    /// </summary>
    private readonly ConcurrentDictionary<string, (long Length, DateTimeOffset LastModified, IReadOnlyList<EpochLine> Lines)> _epochsRead =
        new(StringComparer.Ordinal);

    private long _epochBytesRemembered;

    /// <summary>
    /// The runs with a bound spec (<see cref="RunLayout.Spec"/>): those users started, and a sweep's feature passes (whose
    /// <see cref="RunSummary.PartOf"/> names their sweep); a sweep's trials and stacks bind none, their sweep shows them.
    /// </summary>
    public async Task<IReadOnlyList<string>> JobIdsAsync(CancellationToken cancellationToken)
    {
        var ids = new SortedSet<string>(StringComparer.Ordinal);
        await foreach (var item in store.ListAsync(RunLayout.RunsPrefix, cancellationToken))
        {
            if (RunLayout.JobIdOf(item.Name) is { } id && item.Name == new RunLayout(id).Spec) ids.Add(id);
        }
        return ids.ToList();
    }

    /// <summary>null when the store has nothing of that run.</summary>
    public async Task<RunSummary?> DescribeAsync(string jobId, CancellationToken cancellationToken)
    {
        var bound = await BoundSpec.ReadAsync(store, jobId, cancellationToken);
        if (bound?.Spec.Sweep is not null) return await DescribeSweepAsync(jobId, bound.Spec, cancellationToken);
        var latest = await checkpoints.LoadLatestAsync(jobId, cancellationToken);
        // A sweep's stack of trials checkpoints its members' progress, a list: it is not a run of its own.
        var progress = latest?.Manifest.Metadata is { ValueKind: JsonValueKind.Object } metadata ? metadata.Deserialize<TrainingProgress>(WireJson.Options) : null;
        var layout = new RunLayout(jobId);
        var (published, accuracy) = await PublishedAsync(jobId, cancellationToken);
        bool prepared = await store.ExistsAsync(layout.DatasetReport, cancellationToken);
        if (!published && progress is null && !prepared) return null;
        string state = published ? Published : progress is not null ? Training : Prepared;
        var (first, last) = await WrittenAsync(layout, cancellationToken);
        return new RunSummary(jobId, state, progress?.History.Count ?? 0, progress?.History is [.., var lastEpoch] ? lastEpoch : null,
            published ? layout.Safetensors : null, accuracy, first, last, bound?.Sweep);
    }

    /// <summary>
    /// A sweep: published once its report names its best trial (whose model it publishes), training once a trial has an
    /// epoch, else prepared; with its trials.
    /// </summary>
    private async Task<RunSummary> DescribeSweepAsync(string sweepId, JobSpec spec, CancellationToken cancellationToken)
    {
        var report = await SweepReportAsync(sweepId, cancellationToken);
        var trials = await TrialsAsync(sweepId, spec, report, null, cancellationToken);
        var (published, accuracy) = report is null ? (false, null) : await PublishedAsync(report.Best, cancellationToken);
        string state = published ? Published : trials.Any(t => t.EpochsDone > 0) ? Training : Prepared;
        var (first, last) = await WrittenAsync(new RunLayout(sweepId), cancellationToken);
        var best = report?.Trials.FirstOrDefault(t => t.JobId == report.Best);
        var progress = new SweepProgress(trials.Count, trials.Count(t => t.State is not (TrialStates.Pending or TrialStates.Running)),
            trials.Count(t => t.State == TrialStates.Running), best?.JobId, best?.ValidationLoss, best?.ValidationAccuracy);
        return new RunSummary(sweepId, state, 0, null, published ? new RunLayout(report!.Best).Safetensors : null, accuracy, first, last,
            Trials: trials, Sweep: progress);
    }

    /// <summary>
    /// Every trial of the sweep <paramref name="sweepId"/> of <paramref name="spec"/>, in index order, as its recorded epochs
    /// (<see cref="RunMetrics"/>) tell it while the sweep runs, and as the sweep's report tells it once written.
    /// </summary>
    /// <param name="terminated">the trials early termination stopped, when the sweep's orchestration is at hand to say</param>
    public async Task<IReadOnlyList<TrialProgress>> TrialsAsync(string sweepId, JobSpec spec, IReadOnlyCollection<int>? terminated,
        CancellationToken cancellationToken) =>
        await TrialsAsync(sweepId, spec, await SweepReportAsync(sweepId, cancellationToken), terminated, cancellationToken);

    private async Task<IReadOnlyList<TrialProgress>> TrialsAsync(string sweepId, JobSpec spec, SweepReport? report, IReadOnlyCollection<int>? terminated,
        CancellationToken cancellationToken)
    {
        spec = spec with { JobId = sweepId };
        var planned = SweepPlanner.Plan(spec);
        var reported = report?.Trials.ToDictionary(t => t.Index);
        // One listing says which trials have recorded epochs and which of those changed, rather than a read per trial per
        // poll (a 1,000-trial sweep's pending trials would be a thousand reads of nothing, every poll).
        var written = new Dictionary<string, ArtifactInfo>(StringComparer.Ordinal);
        await foreach (var file in store.ListAsync(RunLayout.RunsPrefix + SweepPlanner.TrialPrefix(sweepId), cancellationToken))
            written[file.Name] = file;
        var trials = new List<TrialProgress>(planned.Count);
        foreach (var plan in reported is null ? planned : planned.Where(t => reported.ContainsKey(t.Index)))
        {
            var summary = reported?[plan.Index];
            // A bayesian sweep's values past its first proposals depend on the results: its plan's are not the ones that run.
            var parameters = summary?.Parameters ?? (spec.Sweep!.Method == SweepMethod.Bayesian ? null : plan.Parameters);
            var trialSpec = parameters is null ? plan.Spec : SweepPlanner.Apply(spec, parameters, plan.JobId);
            var lines = written.TryGetValue(new RunLayout(plan.JobId).Metrics, out var metrics)
                ? await RecordedEpochsAsync(plan.JobId, metrics, cancellationToken)
                : [];
            var history = lines.Select(l => new EpochMetrics(l.Epoch - 1, l.TrainLoss, l.TrainAccuracy, l.ValidationLoss, l.ValidationAccuracy, l.LearningRate, l.Seconds))
                .ToList();
            int epochs = lines is [.., var lastLine] ? lastLine.Epochs : trialSpec.Training.Epochs;
            string state = summary?.State
                ?? (terminated?.Contains(plan.Index) == true ? TrialStates.Terminated
                : history.Count == 0 ? TrialStates.Pending
                : history.Count >= epochs ? TrialStates.Completed
                : TrainingHistory.ShouldStop(history, trialSpec.StoppingMetric(), trialSpec.Training.EarlyStopping?.Patience) ? TrialStates.StoppedEarly
                : TrialStates.Running);
            trials.Add(new TrialProgress(plan.Index, plan.JobId, parameters, state, history.Count, epochs, history is [.., var last] ? last.ValidationLoss : null,
                history is [.., var lastEpoch] ? lastEpoch.ValidationAccuracy : null));
        }
        return trials;
    }

    /// <summary>The run's recorded epochs, read again only when its metrics file has changed since the last read.</summary>
    private async Task<IReadOnlyList<EpochLine>> RecordedEpochsAsync(string runId, ArtifactInfo metrics, CancellationToken cancellationToken)
    {
        if (_epochsRead.TryGetValue(metrics.Name, out var read) && read.Length == metrics.Length && read.LastModified == metrics.LastModified)
            return read.Lines;
        var lines = await RunMetrics.ReadAsync(store, runId, cancellationToken);
        // Bounded: past the limit it starts again, as if nothing had been read.
        long replaced = _epochsRead.TryGetValue(metrics.Name, out var before) ? before.Length : 0;
        if (Interlocked.Add(ref _epochBytesRemembered, metrics.Length - replaced) > MaxEpochBytesRemembered)
        {
            _epochsRead.Clear();
            Interlocked.Exchange(ref _epochBytesRemembered, metrics.Length);
        }
        _epochsRead[metrics.Name] = (metrics.Length, metrics.LastModified, lines);
        return lines;
    }

    private async Task<SweepReport?> SweepReportAsync(string sweepId, CancellationToken cancellationToken)
    {
        try
        {
            await using var stream = await store.OpenReadAsync(new RunLayout(sweepId).SweepReport, cancellationToken);
            return await JsonSerializer.DeserializeAsync<SweepReport>(stream, WireJson.Options, cancellationToken);
        }
        catch (ArtifactNotFoundException)
        {
            return null;
        }
    }

    /// <summary>Whether the run has published (its model card is there), and the top-1 accuracy the card records.</summary>
    private async Task<(bool Published, double? Top1Accuracy)> PublishedAsync(string jobId, CancellationToken cancellationToken)
    {
        string card = new RunLayout(jobId).ModelCard;
        if (!await store.ExistsAsync(card, cancellationToken)) return (false, null);
        await using var stream = await store.OpenReadAsync(card, cancellationToken);
        using var buffer = new MemoryStream();
        await stream.CopyToAsync(buffer, cancellationToken);
        return (true, ModelCard.Read(buffer.ToArray(), card).Metrics?.Top1Accuracy);
    }

    private async Task<(DateTimeOffset First, DateTimeOffset Last)> WrittenAsync(RunLayout layout, CancellationToken cancellationToken)
    {
        DateTimeOffset first = DateTimeOffset.MaxValue, last = DateTimeOffset.MinValue;
        await foreach (var item in store.ListAsync(layout.Root, cancellationToken))
        {
            if (item.LastModified < first) first = item.LastModified;
            if (item.LastModified > last) last = item.LastModified;
        }
        return (first, last);
    }
}
