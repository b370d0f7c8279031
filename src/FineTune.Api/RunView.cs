using FineTune.Storage;
using FineTune.Workflow.Orchestration;
using FineTune.Workflow.Services;
using Microsoft.DurableTask;
using Microsoft.DurableTask.Client;

namespace FineTune.Api;

/// <summary>
/// The status of a run known from its artifacts only: the durable statuses where they apply, and <see cref="Stopped"/> for a
/// run no process is running that has not published (killed, or cancelled in another process): its own command resumes it.
/// </summary>
public static class CatalogStatus
{
    public const string Running = nameof(OrchestrationRuntimeStatus.Running);
    public const string Completed = nameof(OrchestrationRuntimeStatus.Completed);
    public const string Stopped = "Stopped";
}

/// <summary>The URLs of one run, absolute, as the status, list and start answers give them.</summary>
public sealed record RunLinks(string Status, string Cancel, string Artifacts, string Predict);

/// <summary>Where a published run's files can be downloaded (names as <see cref="RunLayout"/> has them).</summary>
public sealed record RunArtifacts(string Model, string TorchSharpModel, string ModelCard, string Report, string Predictions, string Metrics,
    string LossPlot, string AccuracyPlot, string ConfusionPlot);

/// <summary>
/// One run as the API shows it: its durable state, progress (custom status) and, when done, result and downloads; a failed
/// run's error and <see cref="ErrorKind"/> (<see cref="ErrorKinds"/>: badInput, never worth retrying as is, or system); a sweep's
/// <see cref="Trials"/>, each as far as the store records it (on a run's own view, not in lists).
/// </summary>
public sealed record RunView(
    string Id,
    string Status,
    bool Done,
    DateTimeOffset CreatedAt,
    DateTimeOffset LastUpdatedAt,
    RunStatus? Progress,
    FineTuneResult? Result,
    RunArtifacts? Artifacts,
    string? Error,
    RunLinks Links,
    string? ErrorKind = null,
    IReadOnlyList<TrialProgress>? Trials = null)
{
    /// <summary>The run as shown, its links under <paramref name="baseUrl"/> (the API's absolute root URL).</summary>
    public static RunView Of(string baseUrl, OrchestrationMetadata instance, bool withResult)
    {
        RunStatus? progress = instance.SerializedCustomStatus is null ? null : instance.ReadCustomStatusAs<RunStatus>();
        FineTuneResult? result = instance.RuntimeStatus == OrchestrationRuntimeStatus.Completed && instance.SerializedOutput is not null
            ? instance.ReadOutputAs<FineTuneResult>() : null;
        string id = instance.InstanceId;
        var links = LinksOf(baseUrl, id);
        // Continuing as new resets the instance's CreatedAt to its latest generation's: the status carries the first's.
        var createdAt = progress?.CreatedAt is { } first ? new DateTimeOffset(DateTime.SpecifyKind(first, DateTimeKind.Utc)) : instance.CreatedAt;
        return new RunView(id, instance.RuntimeStatus.ToString(), instance.IsCompleted, createdAt, instance.LastUpdatedAt, progress,
            withResult ? result : null, result is null ? null : Downloads(links), Innermost(instance.FailureDetails), links, ErrorKinds.Of(instance));
    }

    /// <summary>
    /// A run this API's durable backend never held (another process trained it on the same store), as its artifacts tell it:
    /// completed once published, else <see cref="CatalogStatus.Running"/> while it runs somewhere (<see cref="RunControl.IsRunningAsync"/>),
    /// else <see cref="CatalogStatus.Stopped"/>. A sweep's progress is as its custom status would have it, its downloads its best trial's.
    /// </summary>
    public static RunView Of(string baseUrl, RunSummary run, bool running)
    {
        bool published = run.PublishedModel is not null;
        // Publishing is a run's last call: a published run is done, whatever calls ended just before.
        string status = published ? CatalogStatus.Completed : running ? CatalogStatus.Running : CatalogStatus.Stopped;
        var links = LinksOf(baseUrl, run.JobId);
        var progress = run.Sweep is { } sweep
            ? new RunStatus(published ? RunStage.Completed : RunStage.Training, 0, 0, 0, 0, null, sweep.BestValidationLoss, sweep.BestValidationAccuracy, null, null, sweep)
            : null;
        var downloads = !published ? null : Downloads(run.Sweep?.BestTrial is { } best ? LinksOf(baseUrl, best) : links);
        return new RunView(run.JobId, status, status != CatalogStatus.Running, run.FirstWritten, run.LastWritten, progress, null, downloads, null, links, Trials: run.Trials);
    }

    public static RunLinks LinksOf(string baseUrl, string id)
    {
        string root = $"{baseUrl}/{ApiRoutes.Runs}/{Uri.EscapeDataString(id)}";
        return new RunLinks(root, root + "/cancel", root + "/artifacts", root + "/predict");
    }

    private static RunArtifacts Downloads(RunLinks links)
    {
        string File(string name) => $"{links.Artifacts}/{name}";
        return new RunArtifacts(File(RunLayout.SafetensorsFile), File(RunLayout.TorchSharpFile), File(RunLayout.ModelCardFile),
            File(RunLayout.EvaluationReportFile), File(RunLayout.PredictionsFile), File(RunLayout.MetricsFile),
            File(RunLayout.LossPlotFile), File(RunLayout.AccuracyPlotFile), File(RunLayout.ConfusionPlotFile));
    }

    /// <summary>The failure users can act on, without the framework's wrapping.</summary>
    private static string? Innermost(TaskFailureDetails? failure)
    {
        while (failure?.InnerFailure is not null) failure = failure.InnerFailure;
        return failure?.ErrorMessage;
    }
}
