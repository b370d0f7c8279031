using System.Text.Json;
using FineTune.Core.Engine;
using FineTune.Core.Training;
using FineTune.Storage.Checkpoints;
using FineTune.Workflow.Jobs;
using FineTune.Workflow.Orchestration;
using FineTune.Workflow.Services;
using Microsoft.DurableTask;
using Microsoft.Extensions.Options;

namespace FineTune.Workflow.Activities;

/// <summary>
/// The recipe's "train" step: one epoch, or a chunk of at most MaxSteps steps, from the latest checkpoint,
/// ending with a new checkpoint. Idempotent: when the latest checkpoint is already past the requested start,
/// a re-delivered call returns what that work produced instead of training again. When the latest usable
/// checkpoint lies before the requested start (a newer one is damaged), it trains on until it is past it, so
/// every call advances the run. A cancel request stops it at the next step, checkpointed there.
/// </summary>
[DurableTask(ActivityNames.TrainChunk)]
public sealed class TrainChunk(WorkerFiles worker, FineTuneEngine engine, CheckpointStore checkpoints, RunControl runs, IOptions<WorkflowOptions> options,
    WorkerStopping stopping, RunMetrics metrics, IStepObserver steps) : TaskActivity<TrainRequest, TrainResult>
{
    public override async Task<TrainResult> RunAsync(TaskActivityContext context, TrainRequest request)
    {
        try
        {
            return await TrainAsync(request);
        }
        catch (Exception e) when (WorkerDiskFullException.Is(e))
        {
            throw new WorkerDiskFullException(request.Job.JobId);
        }
    }

    private async Task<TrainResult> TrainAsync(TrainRequest request)
    {
        var token = stopping.Token;
        var job = request.Job;
        var files = worker.For(job);
        int stepsPerEpoch = request.Prepared.StepsPerEpoch;
        var state = await files.LatestStateAsync(token);
        if (state is not null && GlobalStep(state.Progress.Position, stepsPerEpoch) > request.FromStep)
        {
            await metrics.WriteAsync(job.JobId, job.Spec.Training.Epochs, state.Progress.History, token);
            return Result(state.Progress, request, lastLoss: null, []);
        }

        // Counted in the store before any work: a worker killed for memory throws nothing, it just never finishes.
        int attempts = await runs.CountAttemptAsync(job.JobId, request.FromStep, token);
        if (attempts > options.Value.MaxChunkAttempts) throw new ChunkAttemptsExhaustedException(job.JobId, request.FromStep, attempts - 1);

        int epochsBefore = state?.Progress.History.Count ?? 0;
        var clock = new StageClock();
        // Both a cancel request and this worker stopping end the chunk at a step boundary with a checkpoint; a cancel
        // while the inputs load stops the load.
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(token);
        TrainingProgress progress;
        double? lastLoss;
        await using (runs.WatchForCancel(job, stop))
        {
            ActivityInputs inputs;
            try
            {
                inputs = await files.LoadAsync(request.Weights, request.Prepared, stop.Token, clock);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested && !token.IsCancellationRequested)
            {
                throw new RunCancelledException(job.JobId);
            }
            do
            {
                var outcome = clock.Time(Stages.Training, () => engine.Train(inputs.Recipe, inputs.Dataset, state, inputs.Features, request.MaxSteps,
                    CancellationToken.None, report => steps.OnStep(job, report, stop.Token), () => stop.IsCancellationRequested, inputs.KeptImages));
                state = outcome.State;
                progress = state.Progress;
                lastLoss = outcome.LastLoss;
                // Not the stopping token: the point just reached is saved even while the worker shuts down.
                await clock.TimeAsync(Stages.Checkpoints, () => SaveAsync(job, state, stepsPerEpoch, CancellationToken.None));
            }
            while (GlobalStep(progress.Position, stepsPerEpoch) <= request.FromStep && !stop.IsCancellationRequested);
            // The epochs finished before this call were recorded by the calls that finished them. Inside the watch: a
            // restart waits for its running marker, so a cancelled call's late record cannot overwrite the new attempt's.
            await metrics.RecordAsync(job.JobId, job.ControlRun, job.Spec.Training.Epochs, progress.History, epochsBefore, CancellationToken.None);
        }
        token.ThrowIfCancellationRequested();
        WorkflowMetrics.StagesTimed(clock.Times);
        if (stop.IsCancellationRequested) throw new RunCancelledException(job.JobId, GlobalStep(progress.Position, stepsPerEpoch));
        return Result(progress, request, lastLoss, clock.Times);
    }

    /// <summary>Steps done since the start: the checkpoint sequence.</summary>
    public static long GlobalStep(TrainerPosition position, int stepsPerEpoch) => (long)position.Epoch * stepsPerEpoch + position.Step;

    private async Task SaveAsync(FineTuneJob job, TrainingState state, int stepsPerEpoch, CancellationToken token)
    {
        var progress = state.Progress;
        long sequence = GlobalStep(progress.Position, stepsPerEpoch);
        await checkpoints.SaveAsync(job.JobId, sequence, state.Parts, JsonSerializer.SerializeToElement(progress, WireJson.Options), token);
        var best = progress.Best(job.Spec.StoppingMetric());
        await checkpoints.PruneAsync(job.JobId, options.Value.CheckpointsToKeep, best is null ? null : (best.Epoch + 1L) * stepsPerEpoch, sequence, token);
    }

    private static TrainResult Result(TrainingProgress progress, TrainRequest request, double? lastLoss, IReadOnlyList<StageTime> times)
    {
        var position = progress.Position;
        int stepsPerEpoch = request.Prepared.StepsPerEpoch;
        // Step 0 of epoch e > 0: epoch e - 1 has just completed.
        bool epochCompleted = position.Step == 0 && position.Epoch > 0;
        // Only the epochs this call can have changed: the orchestration keeps the earlier ones, so what it carries grows linearly.
        long fromEpoch = request.FromStep / stepsPerEpoch;
        return new TrainResult(GlobalStep(position, stepsPerEpoch), position.Epoch, position.Step, stepsPerEpoch, epochCompleted,
            progress.History.Where(e => e.Epoch >= fromEpoch).ToList(), lastLoss, times, WorkerIdentity.Current);
    }
}
