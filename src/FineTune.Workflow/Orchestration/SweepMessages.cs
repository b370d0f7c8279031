using System.Text.Json;
using FineTune.Core.Training;
using FineTune.Workflow.Jobs;

namespace FineTune.Workflow.Orchestration;

// A sweep's inputs and outputs: small records, never tensors.

/// <summary>
/// Train one trial (a job whose <see cref="FineTuneJob.Carried"/> holds its weights and prepared model, and whose
/// <see cref="FineTuneJob.DataRun"/> is its feature run) from global step <see cref="FromStep"/> to the end of epoch
/// <see cref="UntilEpoch"/> (its last epoch when that is sooner).
/// </summary>
public sealed record TrialRequest(FineTuneJob Trial, long FromStep, int UntilEpoch);

/// <summary>
/// Where a trial stands: <see cref="Finished"/> when it trained all its epochs or stopped early by its patience;
/// <see cref="Workers"/>: the processes that trained its chunks. <see cref="History"/>: its epochs in order, from a training's
/// first on (the sweep holds the earlier ones); in the sweep, only those it decides on (the best, the last, the rungs' ends).
/// </summary>
public sealed record TrialOutcome(string JobId, long GlobalStep, IReadOnlyList<EpochMetrics> History, bool Finished, bool StoppedEarly,
    IReadOnlyList<string> Workers, IReadOnlyList<StageTime> Times);

/// <summary>A trial's state, in a sweep's report and in its live trials (<see cref="TrialProgress"/>).</summary>
public static class TrialStates
{
    /// <summary>No epoch recorded yet.</summary>
    public const string Pending = "pending";
    public const string Running = "running";
    /// <summary>Its patience stopped it (<see cref="TrainingHistory.ShouldStop"/>).</summary>
    public const string StoppedEarly = "stopped early";
    /// <summary>Early termination stopped it at a rung.</summary>
    public const string Terminated = "terminated";
    /// <summary>Trained all its epochs.</summary>
    public const string Completed = "completed";
    /// <summary>In a finished sweep's report: never trained.</summary>
    public const string NotRun = "not run";
}

/// <summary>
/// One trial in a sweep's status, result and report. <see cref="State"/>: <see cref="TrialStates.Completed"/>, stopped early
/// (its patience), or terminated (early termination at a rung). <see cref="Score"/>: its best epoch's score on the sweep's metric (higher is
/// better: the accuracy, or minus the loss).
/// </summary>
public sealed record TrialSummary(int Index, string JobId, IReadOnlyDictionary<string, JsonElement> Parameters, string State, int EpochsRun,
    int? BestEpoch, double? Score, double? ValidationLoss, double? ValidationAccuracy, IReadOnlyList<string> Workers);

/// <summary>
/// A sweep's progress in its custom status: trials done, the best one so far, the trial (or rung of one) that ended last, and
/// the trials (by index) early termination stopped, which their recorded epochs alone do not tell.
/// </summary>
public sealed record SweepProgress(int Trials, int Finished, int Running, string? BestTrial, double? BestValidationLoss, double? BestValidationAccuracy,
    TrialSummary? Latest = null, IReadOnlyList<int>? Terminated = null);

/// <summary>
/// One trial of a sweep as the store records it, while the sweep runs and after: its <see cref="TrialStates"/> state, epochs
/// done of <see cref="Epochs"/>, and its last epoch's validation metrics. <see cref="Parameters"/>: the values it sets; null
/// for a bayesian sweep's trial until the sweep's report names them (they depend on the trials before).
/// </summary>
public sealed record TrialProgress(int Index, string JobId, IReadOnlyDictionary<string, JsonElement>? Parameters, string State, int EpochsDone, int Epochs,
    double? ValidationLoss, double? ValidationAccuracy);

/// <summary>
/// A finished sweep: the trial published, every trial (best first, by the sweep's metric), the feature passes it took, and
/// the sweep report (JSON table and a plot of the metric against each swept parameter).
/// </summary>
public sealed record SweepSummary(string BestTrial, StoppingMetric Metric, IReadOnlyList<TrialSummary> Trials, int FeaturePasses, string ReportName, string PlotName);

/// <summary>A sweep's report (<c>sweep.json</c>), as written and read back: the metric by its name, the best trial, every trial best first.</summary>
public sealed record SweepReport(string Sweep, string Metric, string Best, IReadOnlyList<TrialSummary> Trials);

public sealed record SweepReportRequest(string SweepId, StoppingMetric Metric, IReadOnlyList<TrialSummary> Trials);

/// <summary>
/// Train a stack of a sweep's trials (<see cref="Activities.TrainStackedTrials"/>) to the end of epoch <see cref="UntilEpoch"/>:
/// <see cref="Stack"/> is the stack as a run (its id names its checkpoints; <see cref="FineTuneJob.Carried"/> holds the
/// group's weights and prepared model, <see cref="FineTuneJob.DataRun"/> its feature run, <see cref="FineTuneJob.ControlRun"/>
/// the sweep); <see cref="Excluded"/>: trials (by index) terminated at an earlier rung, which train no more. The outcomes
/// hold the epochs from <see cref="FromEpoch"/> on (the rung's first): the sweep holds those before, so a result stays the
/// size of a rung however long the trials run.
/// </summary>
public sealed record StackRequest(FineTuneJob Stack, IReadOnlyList<SweepTrial> Trials, int UntilEpoch, IReadOnlyList<int> Excluded, int FromEpoch = 0);

/// <summary>Where each trial of a stack stands (in the request's order), and the stages' times of the call.</summary>
public sealed record StackResult(IReadOnlyList<TrialOutcome> Trials, IReadOnlyList<StageTime> Times);

/// <summary>
/// Store one stacked trial's best epoch as a checkpoint of the trial's own run, at <see cref="Sequence"/>, for the
/// evaluate and publish steps that read a run's checkpoints.
/// </summary>
public sealed record TrialCheckpointRequest(FineTuneJob Stack, SweepTrial Trial, int Member, long Sequence);

/// <summary>What trains some of a sweep's trials: a stack (<see cref="StackId"/>, trained by one activity per rung) or one trial alone (null).</summary>
public sealed record SweepUnit(string? StackId, IReadOnlyList<SweepTrial> Trials);

/// <summary>
/// What a sweep hands to its next generation when it continues as new: no more than the trials' results and what cannot be
/// recomputed (the plan, the trials' specs and the units are, deterministically). <see cref="Rounds"/>: the trials each round
/// proposed, in order; the last round trains on from rung <see cref="Rung"/>. <see cref="Values"/>: a bayesian sweep's trials'
/// values by index (they came from the scores before them); null for grid and random, whose trials are the plan's.
/// <see cref="Outcomes"/>: every trial's so far, by index, with the epochs the sweep decides on (a few a trial, however many
/// it ran) and without stage times (they are summed in <see cref="Times"/>).
/// </summary>
public sealed record SweepCarried(IReadOnlyList<int> Rounds, int Rung, IReadOnlyList<IReadOnlyDictionary<string, JsonElement>>? Values,
    IReadOnlyList<TrialOutcome> Outcomes, IReadOnlyList<int> Terminated, IReadOnlyList<SweepGroup> Groups, DateTime StartedAt, IReadOnlyList<StageTime> Times);

/// <summary>A feature group whose pass has run: its pretrained weights and prepared model, which its trials train from.</summary>
public sealed record SweepGroup(int Group, WeightsRef Weights, PreparedSummary Prepared);
