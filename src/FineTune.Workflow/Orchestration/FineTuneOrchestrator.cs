using FineTune.Core;
using FineTune.Core.Training;
using FineTune.Core.Weights;
using FineTune.Workflow.Activities;
using FineTune.Workflow.Jobs;
using FineTune.Workflow.Services;
using Microsoft.DurableTask;

namespace FineTune.Workflow.Orchestration;

/// <summary>
/// The seed recipe as a durable orchestration. It only sequences the activities: fetch pretrained weights →
/// prepare model (freeze + replace head) → train, chunk by chunk, each ending in a checkpoint → evaluate →
/// publish. It decides early stopping, reports progress in its custom status, and continues as new every
/// <see cref="FineTuneJob.ChunksPerGeneration"/> chunks so its history stays bounded.
/// </summary>
[DurableTask(Name)]
public sealed class FineTuneOrchestrator : TaskOrchestrator<FineTuneJob, FineTuneResult?>
{
    public const string Name = "FineTune";

    /// <summary>How long transient failures of one activity call are retried before the run fails.</summary>
    public static readonly TimeSpan RetryBudget = TimeSpan.FromMinutes(30);

    /// <summary>
    /// Transient failures (storage away, a worker lost) are retried for up to <see cref="RetryBudget"/>, backing off
    /// from 2 s (storage-queue timers round to seconds) to 2 minutes, so an outage of many minutes does not end a long
    /// run. Bad input, permanent failures (<see cref="PermanentRunFailureException"/>) and an unreachable weights host
    /// (<see cref="WeightsHostUnreachableException"/>, tried a few times already) are not retried. A worker
    /// killed outright raises nothing: those restarts are counted per chunk by <see cref="TrainChunk"/> instead.
    /// Every orchestration of the workflow calls its activities so.
    /// </summary>
    internal static readonly TaskOptions Retry = TaskOptions.FromRetryPolicy(new RetryPolicy(
        maxNumberOfAttempts: int.MaxValue, firstRetryInterval: TimeSpan.FromSeconds(2), backoffCoefficient: 2,
        maxRetryInterval: TimeSpan.FromMinutes(2), retryTimeout: RetryBudget)
    {
        HandleFailure = failure => !IsPermanent(failure),
    });

    /// <summary>Asks for a slot this many times in one generation before continuing as new: a long wait keeps the history bounded.</summary>
    private const int AsksPerGeneration = 100;

    /// <summary>
    /// The run once admitted (<see cref="AdmitAsync"/>), its scratch and its slot released on every worker path that ends it
    /// here: completed or failed (not continued as new).
    /// </summary>
    public override Task<FineTuneResult?> RunAsync(TaskOrchestrationContext context, FineTuneJob job)
    {
        bool continued = job.CreatedAt is not null;
        job = Dated(context, job);
        // Continuing as new clears the instance's status, and asking for a slot is an activity call away: a continued
        // generation shows where the run stands from the start.
        if (continued)
            SetStatus(context, job, job.Carried is { } carried ? Resumed(carried, job.Spec) : Status(RunStage.Queued, job.Spec.Training.Epochs));
        return ReleasingAsync(context, job, job.DataRun is null ? [job.JobId] : [], () => AdmittedAsync(context, job,
            position => Status(RunStage.Queued, job.Spec.Training.Epochs) with { QueuePosition = position }, () => RunStepsAsync(context, job),
            result => result is not null, AsksPerGeneration), result => result is not null);
    }

    /// <summary>The job with <see cref="FineTuneJob.CreatedAt"/>: this generation's start when it is the first.</summary>
    internal static FineTuneJob Dated(TaskOrchestrationContext context, FineTuneJob job) =>
        job.CreatedAt is null ? job with { CreatedAt = context.CurrentUtcDateTime } : job;

    /// <summary>The run's status as the API shows it, dated by the run's first generation (<see cref="FineTuneJob.CreatedAt"/>).</summary>
    internal static void SetStatus(TaskOrchestrationContext context, FineTuneJob job, RunStatus status) =>
        context.SetCustomStatus(status with { CreatedAt = job.CreatedAt });

    /// <summary>
    /// Waits for a slot for <paramref name="job"/> on its worker (<see cref="RunSlots"/>) — its status <paramref name="queued"/>
    /// with its place meanwhile, a durable timer between asks — then runs <paramref name="body"/>, and frees the slot when
    /// <paramref name="ended"/> says the body ended the run, or it failed. After <paramref name="maxAsks"/> asks without a
    /// slot it continues as new (returning default), so a long wait does not grow the history.
    /// </summary>
    internal static async Task<T?> AdmittedAsync<T>(TaskOrchestrationContext context, FineTuneJob job, Func<int, RunStatus> queued, Func<Task<T>> body,
        Func<T, bool> ended, int maxAsks = int.MaxValue)
    {
        for (int asks = 1; await context.CallActivityAsync<Admission>(ActivityNames.AdmitRun, job, Retry) is { Admitted: false } wait; asks++)
        {
            if (asks == maxAsks)
            {
                context.ContinueAsNew(job);
                return default;
            }
            SetStatus(context, job, queued(wait.Position));
            await context.CreateTimer(wait.RetryAfter, CancellationToken.None);
        }
        T result;
        try
        {
            result = await body();
        }
        catch (Exception)
        {
            await context.CallActivityAsync<bool>(ActivityNames.LeaveRun, job.JobId, Retry);
            throw;
        }
        if (ended(result)) await context.CallActivityAsync<bool>(ActivityNames.LeaveRun, job.JobId, Retry);
        return result;
    }

    /// <summary>
    /// <paramref name="body"/>, then (when <paramref name="ended"/> says the run ended, or it failed) <see cref="ReleaseRunFiles"/>
    /// for <paramref name="runIds"/>: what the runs left on a worker is removed with them. A cancel ends the orchestration
    /// without running this; the runner (<c>finetune</c>), restart and purge release it then. The run's end is counted
    /// (<see cref="WorkflowMetrics"/>) once, by the execution past replaying: no activity sees it.
    /// </summary>
    internal static async Task<T> ReleasingAsync<T>(TaskOrchestrationContext context, FineTuneJob job, string[] runIds, Func<Task<T>> body, Func<T, bool> ended)
    {
        string kind = WorkflowMetrics.KindOf(context.Name);
        T result;
        try
        {
            result = await body();
        }
        catch (Exception e)
        {
            SetStatus(context, job, ErrorKinds.Failed(e));
            if (runIds.Length > 0) await context.CallActivityAsync<int>(ActivityNames.ReleaseRunFiles, runIds);
            if (!context.IsReplaying) WorkflowMetrics.RunFailed(kind);
            throw;
        }
        if (ended(result))
        {
            if (runIds.Length > 0) await context.CallActivityAsync<int>(ActivityNames.ReleaseRunFiles, runIds);
            if (!context.IsReplaying) WorkflowMetrics.RunCompleted(kind);
        }
        return result;
    }

    /// <summary>
    /// "Freeze + replace head" (<see cref="ActivityNames.PrepareModel"/>), then, when it left the feature pass to shards, one
    /// <see cref="ActivityNames.ComputeFeatureShard"/> per shard at once, so every worker of the task hub takes some; the
    /// shards come back in the plan's order, each split's in row order, as the single pass names them.
    /// </summary>
    /// <param name="shardsDone">told how many shards of a fanned-out pass are computed, of how many, as they finish</param>
    internal static async Task<PreparedSummary> PrepareAsync(TaskOrchestrationContext context, PrepareRequest request, Action<FeaturePassProgress>? shardsDone = null)
    {
        var prepared = await context.CallActivityAsync<PreparedSummary>(ActivityNames.PrepareModel, request, Retry);
        if (prepared.PassShards.Count == 0) return prepared;
        var started = context.CurrentUtcDateTime;
        var shards = prepared.PassShards.Select(shard => context.CallActivityAsync<ComputedFeatureShard>(
            ActivityNames.ComputeFeatureShard, new FeatureShardRequest(request.Job, request.Weights, shard), Retry)).ToList();
        // A long pass (35 shards of 2,048 images: 40 minutes on 2 cores) shows its progress as shards finish.
        var running = new List<Task<ComputedFeatureShard>>(shards);
        int done = 0;
        shardsDone?.Invoke(new FeaturePassProgress(done, shards.Count));
        while (running.Count > 0)
        {
            var ended = await Task.WhenAny(running);
            running.Remove(ended);
            // A shard that failed is not done: the run fails once the others end.
            if (ended.IsCompletedSuccessfully) shardsDone?.Invoke(new FeaturePassProgress(++done, shards.Count));
        }
        var computed = await Task.WhenAll(shards);
        return prepared with
        {
            FeatureShards = [.. computed.Select(c => c.Shard)],
            PassShards = [],
            PassWorkers = [.. computed.Select(c => c.Worker).Distinct()],
            Times = [.. prepared.Times, new StageTime(Stages.FeaturePass, (context.CurrentUtcDateTime - started).TotalSeconds)],
        };
    }

    private static async Task<FineTuneResult?> RunStepsAsync(TaskOrchestrationContext context, FineTuneJob job)
    {
        var spec = job.Spec;
        int epochs = spec.Training.Epochs;
        var carried = job.Carried;
        if (carried is null)
        {
            SetStatus(context, job, Status(RunStage.FetchingWeights, epochs));
            var fetchStarted = context.CurrentUtcDateTime;
            var weights = await context.CallActivityAsync<WeightsRef>(ActivityNames.FetchPretrainedWeights, job, Retry);
            var fetchTime = new StageTime(Stages.Weights, (context.CurrentUtcDateTime - fetchStarted).TotalSeconds);
            SetStatus(context, job, Status(RunStage.PreparingModel, epochs));
            var prepared = await PrepareAsync(context, new PrepareRequest(job, weights),
                pass => SetStatus(context, job, Status(RunStage.PreparingModel, epochs) with { FeaturePass = pass }));
            carried = new CarriedState(weights, prepared, 0, [], context.CurrentUtcDateTime, 0, [fetchTime, .. prepared.Times]);
        }
        var times = new List<StageTime>(carried.Times);

        IReadOnlyList<EpochMetrics> history = carried.History;
        long step = carried.GlobalStep;
        long totalSteps = (long)epochs * carried.Prepared.StepsPerEpoch;
        bool stoppedEarly = false;
        var metric = spec.StoppingMetric();
        for (int chunk = 0; step < totalSteps; chunk++)
        {
            if (chunk == job.ChunksPerGeneration)
            {
                context.ContinueAsNew(job with { Carried = carried with { GlobalStep = step, History = history, Times = Stages.Total(times) } });
                return null;
            }
            // The analyzer knows a class-based activity by its class name only, not by [DurableTask("TrainEpoch")] on TrainChunk.
#pragma warning disable DURABLE2003
            var result = await context.CallActivityAsync<TrainResult>(ActivityNames.TrainChunk,
                new TrainRequest(job, carried.Weights, carried.Prepared, step, spec.Training.MaxStepsPerChunk), Retry);
#pragma warning restore DURABLE2003
            if (result.GlobalStep <= step) throw new ChunkDidNotAdvanceException(job.JobId, step, result.GlobalStep);
            history = TrainingHistory.Merged(history, result.History);
            step = result.GlobalStep;
            times.AddRange(result.Times);
            SetStatus(context, job, Training(context, carried, result, history, epochs, totalSteps, metric));
            if (result.EpochCompleted && TrainingHistory.ShouldStop(history, metric, spec.Training.EarlyStopping?.Patience))
            {
                stoppedEarly = true;
                break;
            }
        }

        var best = TrainingHistory.Best(history, metric) ?? throw new InvalidOperationException("training finished without a completed epoch");
        long bestSequence = (best.Epoch + 1L) * carried.Prepared.StepsPerEpoch;
        SetStatus(context, job, Status(RunStage.Evaluating, epochs, history, best));
        var evaluation = await context.CallActivityAsync<EvaluationSummary>(ActivityNames.Evaluate,
            new ModelRequest(job, carried.Weights, carried.Prepared, bestSequence), Retry);
        SetStatus(context, job, Status(RunStage.Publishing, epochs, history, best));
        var published = await context.CallActivityAsync<PublishedModel>(ActivityNames.Publish,
            new PublishRequest(job, carried.Weights, bestSequence, carried.Prepared, evaluation, best.Epoch, history), Retry);
        SetStatus(context, job, Status(RunStage.Completed, epochs, history, best));
        times.AddRange(evaluation.Times);
        times.AddRange(published.Times);
        return new FineTuneResult(job.JobId, published, evaluation, history.Count, best.Epoch, stoppedEarly, Stages.Total(times))
        {
            PassWorkers = carried.Prepared.PassWorkers,
        };
    }

    private static RunStatus Status(RunStage stage, int epochs, IReadOnlyList<EpochMetrics>? history = null, EpochMetrics? best = null)
    {
        var last = history is { Count: > 0 } ? history[^1] : null;
        return new RunStatus(stage, history?.Count ?? 0, epochs, 0, 0, null, last?.ValidationLoss, last?.ValidationAccuracy, best?.Epoch, null);
    }

    /// <summary>Where a continued generation starts: the step and epochs it carries (the last loss and the time left come with its first chunk).</summary>
    private static RunStatus Resumed(CarriedState carried, JobSpec spec)
    {
        int stepsPerEpoch = carried.Prepared.StepsPerEpoch;
        var last = carried.History.Count > 0 ? carried.History[^1] : null;
        return new RunStatus(RunStage.Training, (int)(carried.GlobalStep / stepsPerEpoch), spec.Training.Epochs, (int)(carried.GlobalStep % stepsPerEpoch),
            stepsPerEpoch, null, last?.ValidationLoss, last?.ValidationAccuracy, TrainingHistory.Best(carried.History, spec.StoppingMetric())?.Epoch, null);
    }

    private static RunStatus Training(TaskOrchestrationContext context, CarriedState carried, TrainResult result, IReadOnlyList<EpochMetrics> history,
        int epochs, long totalSteps, StoppingMetric metric)
    {
        var last = history.Count > 0 ? history[^1] : null;
        double elapsed = (context.CurrentUtcDateTime - carried.StartedAt).TotalSeconds;
        long done = result.GlobalStep - carried.StepsAtStart;
        double? eta = done > 0 ? elapsed / done * (totalSteps - result.GlobalStep) : null;
        return new RunStatus(RunStage.Training, result.Epoch, epochs, result.Step, result.StepsPerEpoch,
            result.LastLoss, last?.ValidationLoss, last?.ValidationAccuracy,
            TrainingHistory.Best(history, metric)?.Epoch, eta);
    }

    /// <summary>
    /// Each family of exceptions is one check (base types match). An exception in this handler would end the retries at
    /// once, which is how a SocketException once failed a run (see <see cref="FailureTypes.Is{T}"/>).
    /// </summary>
    private static bool IsPermanent(TaskFailureDetails failure) =>
        FailureTypes.Is<BadInputException>(failure) || FailureTypes.Is<PermanentRunFailureException>(failure)
        || FailureTypes.Is<WeightsHostUnreachableException>(failure);
}
