using System.Diagnostics;
using System.Diagnostics.Metrics;
using FineTune.Core.Training;
using FineTune.Workflow.Orchestration;

namespace FineTune.Workflow.Services;

/// <summary>
/// The workflow's metrics, through one <see cref="Meter"/> (<see cref="MeterName"/>): the host's OpenTelemetry pipeline
/// exports them (Azure Monitor in the Functions app, Prometheus at <c>finetune serve</c>'s <c>/metrics</c>). Each value is
/// recorded by the activity that produced it, never by an orchestrator as it replays; the run counters' end, which only
/// an orchestration sees, is recorded once it is past replaying. Static: one meter per process, whichever host builds it.
/// </summary>
public static class WorkflowMetrics
{
    public const string MeterName = "FineTune.Workflow";

    public const string TrainLossName = "finetune.epoch.train.loss";
    public const string TrainAccuracyName = "finetune.epoch.train.accuracy";
    public const string ValidationLossName = "finetune.epoch.validation.loss";
    public const string ValidationAccuracyName = "finetune.epoch.validation.accuracy";
    public const string EpochsCompletedName = "finetune.epochs.completed";
    public const string StageDurationName = "finetune.stage.duration";
    public const string RunsStartedName = "finetune.runs.started";
    public const string RunsCompletedName = "finetune.runs.completed";
    public const string RunsFailedName = "finetune.runs.failed";

    /// <summary>Tags: the run (a sweep's trial is a run of its own), the sweep a trial belongs to, a stage's name, a run's kind.</summary>
    public const string RunIdTag = "run_id";
    public const string SweepIdTag = "sweep_id";
    public const string StageTag = "stage";
    public const string KindTag = "kind";

    /// <summary>The values of <see cref="KindTag"/>: a single run, or a sweep (its trials are not counted as runs).</summary>
    public const string RunKind = "run";
    public const string SweepKind = "sweep";

    private static readonly Meter Meter = new(MeterName, typeof(WorkflowMetrics).Assembly.GetName().Version?.ToString());

    private static readonly Gauge<double> TrainLoss = Meter.CreateGauge<double>(TrainLossName, description: "Training loss of the run's latest finished epoch.");
    private static readonly Gauge<double> TrainAccuracy = Meter.CreateGauge<double>(TrainAccuracyName, description: "Training top-1 accuracy (0 to 1) of the run's latest finished epoch.");
    private static readonly Gauge<double> ValidationLoss = Meter.CreateGauge<double>(ValidationLossName, description: "Validation loss of the run's latest finished epoch.");
    private static readonly Gauge<double> ValidationAccuracy = Meter.CreateGauge<double>(ValidationAccuracyName, description: "Validation top-1 accuracy (0 to 1) of the run's latest finished epoch.");
    private static readonly Counter<long> EpochsCompleted = Meter.CreateCounter<long>(EpochsCompletedName, unit: "{epoch}", description: "Epochs the run has finished.");

    /// <summary>Buckets from a tenth of a second to two hours: a stage of a small run takes under a second, a long run's training hours.</summary>
    private static readonly Histogram<double> StageDuration = Meter.CreateHistogram<double>(StageDurationName, unit: "s",
        description: "Seconds one activity call spent in a stage of a run (stage: weights, dataset scan, feature pass, training, checkpoints, evaluation, publish, plots).",
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200] });

    private static readonly Counter<long> RunsStarted = Meter.CreateCounter<long>(RunsStartedName, unit: "{run}", description: "Runs and sweeps scheduled.");
    private static readonly Counter<long> RunsCompleted = Meter.CreateCounter<long>(RunsCompletedName, unit: "{run}", description: "Runs and sweeps that completed.");
    private static readonly Counter<long> RunsFailed = Meter.CreateCounter<long>(RunsFailedName, unit: "{run}", description: "Runs and sweeps that failed.");

    /// <summary>A finished epoch of <paramref name="runId"/> (a trial of <paramref name="sweepId"/> when not null).</summary>
    public static void EpochFinished(string runId, string? sweepId, EpochMetrics epoch)
    {
        var tags = new TagList { { RunIdTag, runId } };
        if (sweepId is not null) tags.Add(SweepIdTag, sweepId);
        TrainLoss.Record(epoch.TrainLoss, tags);
        TrainAccuracy.Record(epoch.TrainAccuracy, tags);
        ValidationLoss.Record(epoch.ValidationLoss, tags);
        ValidationAccuracy.Record(epoch.ValidationAccuracy, tags);
        EpochsCompleted.Add(1, tags);
    }

    /// <summary>The stages one activity call measured, as it reports them to its orchestration.</summary>
    public static void StagesTimed(IEnumerable<StageTime> times)
    {
        foreach (var time in times) StageDuration.Record(time.Seconds, new KeyValuePair<string, object?>(StageTag, time.Stage));
    }

    /// <summary>The kind of run an orchestration of <see cref="RunStarter.IsRun"/> is.</summary>
    public static string KindOf(string orchestrationName) => orchestrationName == SweepOrchestrator.Name ? SweepKind : RunKind;

    public static void RunStarted(string kind) => RunsStarted.Add(1, new KeyValuePair<string, object?>(KindTag, kind));

    public static void RunCompleted(string kind) => RunsCompleted.Add(1, new KeyValuePair<string, object?>(KindTag, kind));

    public static void RunFailed(string kind) => RunsFailed.Add(1, new KeyValuePair<string, object?>(KindTag, kind));
}
