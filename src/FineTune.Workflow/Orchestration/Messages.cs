using FineTune.Core.Training;
using FineTune.Workflow.Jobs;

namespace FineTune.Workflow.Orchestration;

// The orchestration's and activities' inputs and outputs: small records naming artifacts, never tensors.

/// <summary>
/// The orchestration's input. <see cref="ChunksPerGeneration"/>: training calls after which the orchestration
/// continues as new, keeping its history short (a run's chunks; a sweep's stack or trial trainings, one per rung each);
/// <see cref="Carried"/> (a run's) or <see cref="CarriedSweep"/> (a sweep's) is what such a new generation already has.
/// <see cref="DataRun"/>: the run whose copy of the dataset and cached features this one reads (a sweep's trials
/// share their feature run's); its own when null. <see cref="ControlRun"/>: the run whose cancel request stops this
/// one's calls (a sweep's, for its trials, stacks and feature passes); its own when null. <see cref="CreatedAt"/>: when the
/// run's first generation started (UTC), set by it and carried by the others: continuing as new resets the durable
/// instance's own CreatedAt to its latest generation's.
/// </summary>
public sealed record FineTuneJob(string JobId, JobSpec Spec, int ChunksPerGeneration = 50, CarriedState? Carried = null, string? DataRun = null,
    string? ControlRun = null, SweepCarried? CarriedSweep = null, DateTime? CreatedAt = null)
{
    public string DataRunId => DataRun ?? JobId;
    public string ControlRunId => ControlRun ?? JobId;
}

/// <summary>State an orchestration hands to its next generation when it continues as new, with the stage times so far.</summary>
public sealed record CarriedState(WeightsRef Weights, PreparedSummary Prepared, long GlobalStep, IReadOnlyList<EpochMetrics> History, DateTime StartedAt, long StepsAtStart,
    IReadOnlyList<StageTime> Times);

/// <summary>Pretrained weights in the artifact store, by content hash.</summary>
public sealed record WeightsRef(string ArtifactName, string Sha256, string Source);

public sealed record PrepareRequest(FineTuneJob Job, WeightsRef Weights);

public sealed record PreparedSummary(
    IReadOnlyList<string> Classes,
    int TrainImages,
    int ValidationImages,
    int TestImages,
    int SkippedFiles,
    long TrainableParameters,
    long TotalParameters,
    int StepsPerEpoch,
    IReadOnlyList<FeatureShardRef> FeatureShards,
    IReadOnlyList<StageTime> Times)
{
    /// <summary>
    /// Whether training runs on cached backbone features (the training split's shards), not on images. With augmentation
    /// the shards hold the scored splits alone (<see cref="Core.Engine.Recipe.MayCacheEvaluationFeatures"/>).
    /// </summary>
    public bool UsesFeatureCache => FeatureShards.Any(s => Core.Training.FeatureCache.IsShardOf(s.Shard, Core.Data.DatasetSplits.Train));

    /// <summary>Whether a sweep's trials of this model train together as one stack (<see cref="Core.Engine.PreparedModel.StacksTrials"/>).</summary>
    public bool StacksTrials { get; init; }

    /// <summary>
    /// The shards of a feature pass the preparation left to <see cref="Activities.ComputeFeatureShard"/>, one activity each;
    /// empty once they are computed (<see cref="FeatureShards"/>).
    /// </summary>
    public IReadOnlyList<Core.Training.FeatureShardRange> PassShards { get; init; } = [];

    /// <summary>The workers (<see cref="Services.WorkerIdentity"/>) that computed the shards of a fanned-out feature pass.</summary>
    public IReadOnlyList<string> PassWorkers { get; init; } = [];
}

/// <summary>Compute one shard of a fanned-out feature pass.</summary>
public sealed record FeatureShardRequest(FineTuneJob Job, WeightsRef Weights, Core.Training.FeatureShardRange Shard);

/// <summary>A shard of a fanned-out feature pass, stored, and the worker that computed it.</summary>
public sealed record ComputedFeatureShard(FeatureShardRef Shard, string Worker);

/// <summary>One stored shard of cached features: workers keep a copy by <see cref="Sha256"/> and verify what they fetch.</summary>
public sealed record FeatureShardRef(string Shard, string ArtifactName, string Sha256, long Length);

/// <summary>Train from global step <see cref="FromStep"/> for at most <see cref="MaxSteps"/> steps.</summary>
public sealed record TrainRequest(FineTuneJob Job, WeightsRef Weights, PreparedSummary Prepared, long FromStep, int MaxSteps);

/// <summary>
/// Where training stands after a chunk; <see cref="History"/> holds the finished epochs from the chunk's first epoch
/// on (a few numbers each; all of them only when the call found the work already done from step 0);
/// <see cref="LastLoss"/> is null when the call trained nothing (the work was already checkpointed).
/// <see cref="Worker"/>: the process that ran the call (<see cref="Services.WorkerIdentity"/>).
/// </summary>
public sealed record TrainResult(long GlobalStep, int Epoch, int Step, int StepsPerEpoch, bool EpochCompleted, IReadOnlyList<EpochMetrics> History, double? LastLoss,
    IReadOnlyList<StageTime> Times, string? Worker = null);

/// <summary>Evaluate or publish the model of checkpoint <see cref="Sequence"/> (the best epoch's end).</summary>
public sealed record ModelRequest(FineTuneJob Job, WeightsRef Weights, PreparedSummary Prepared, long Sequence);

/// <summary>The final report's headline: <see cref="Split"/> is the set it was computed on, "test" when the dataset has one, else "validation".</summary>
public sealed record EvaluationSummary(string Split, double Loss, double Top1Accuracy, double? Top5Accuracy, int Images, string ReportName, string PredictionsName,
    IReadOnlyList<StageTime> Times)
{
    /// <summary>The head's convex optimum beside the best epoch, where it applies; when <see cref="ConvexHeadSummary.Chosen"/>, what was evaluated (and is published).</summary>
    public ConvexHeadSummary? ConvexHead { get; init; }
}

/// <summary>
/// The head's convex optimum at <see cref="WeightDecay"/> (chosen on validation) and the best epoch's head, both scored on
/// validation; <see cref="Chosen"/>: the optimum scored better by the run's stopping metric and replaced the epoch's head.
/// </summary>
public sealed record ConvexHeadSummary(bool Chosen, double WeightDecay, double ValidationLoss, double ValidationAccuracy, double EpochValidationLoss,
    double EpochValidationAccuracy)
{
    /// <summary>Which head the run kept and the two scores, as the CLI and the model card's README say it.</summary>
    public string Describe()
    {
        var culture = System.Globalization.CultureInfo.InvariantCulture;
        string optimum = string.Create(culture, $"the convex optimum (weight decay {WeightDecay:g}; validation loss {ValidationLoss:F4}, {ValidationAccuracy:P1})");
        string epoch = string.Create(culture, $"the best epoch's (validation loss {EpochValidationLoss:F4}, {EpochValidationAccuracy:P1})");
        return Chosen ? $"{optimum}, not {epoch}" : $"{epoch}, not {optimum}";
    }
}

/// <summary>
/// Publish checkpoint <see cref="Sequence"/>, the end of epoch <see cref="BestEpoch"/>. <see cref="History"/>: the run's every
/// epoch, for its curves and model card; null for a sweep's trial, whose sweep holds only some of its epochs: then the
/// run's recorded ones (<see cref="Services.RunMetrics"/>).
/// </summary>
public sealed record PublishRequest(FineTuneJob Job, WeightsRef Weights, long Sequence, PreparedSummary Prepared, EvaluationSummary Evaluation, int BestEpoch,
    IReadOnlyList<EpochMetrics>? History);

public sealed record PublishedModel(string Folder, string SafetensorsName, string TorchSharpName, string ModelCardName, IReadOnlyList<StageTime> Times);

/// <summary>
/// <see cref="Times"/>: seconds per stage, summed over the run's activities (<see cref="Stages"/>). A sweep's result is
/// its best trial's, with <see cref="Sweep"/> telling every trial.
/// </summary>
public sealed record FineTuneResult(string JobId, PublishedModel Published, EvaluationSummary Evaluation, int EpochsRun, int BestEpoch, bool StoppedEarly,
    IReadOnlyList<StageTime> Times, SweepSummary? Sweep = null)
{
    /// <summary>The workers that computed the shards of the run's feature pass when it fanned out (<see cref="PreparedSummary.PassWorkers"/>).</summary>
    public IReadOnlyList<string> PassWorkers { get; init; } = [];
}

/// <summary>
/// The orchestration's custom status: small (far below the 16 KB limit) and enough for a progress bar. While the run is
/// queued, <see cref="QueuePosition"/> is its place in the worker's queue (1: next). While a fanned-out feature pass runs,
/// <see cref="FeaturePass"/> counts its shards. A failed run's is <see cref="RunStage.Failed"/> with its
/// <see cref="ErrorKind"/> (<see cref="ErrorKinds.Failed"/>).
/// </summary>
public sealed record RunStatus(
    RunStage Stage,
    int Epoch,
    int Epochs,
    int Step,
    int StepsPerEpoch,
    double? LastLoss,
    double? ValidationLoss,
    double? ValidationAccuracy,
    int? BestEpoch,
    double? EtaSeconds,
    SweepProgress? Sweep = null,
    int? QueuePosition = null,
    string? ErrorKind = null,
    FeaturePassProgress? FeaturePass = null,
    DateTime? CreatedAt = null);

/// <summary>A fanned-out feature pass under way (<see cref="PreparedSummary.PassShards"/>): its shards computed so far, of all.</summary>
public sealed record FeaturePassProgress(int ShardsDone, int Shards);
