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
/// a re-delivered call returns what that work produced instead of training again.
/// </summary>
[DurableTask(ActivityNames.TrainChunk)]
public class TrainChunk(WorkerFiles worker, FineTuneEngine engine, CheckpointStore checkpoints, IOptions<WorkflowOptions> options, WorkerStopping stopping,
    RunMetrics metrics)
    : TaskActivity<TrainRequest, TrainResult>
{
    public override async Task<TrainResult> RunAsync(TaskActivityContext context, TrainRequest request)
    {
        var token = stopping.Token;
        var job = request.Job;
        var files = worker.For(job);
        int stepsPerEpoch = request.Prepared.StepsPerEpoch;
        var state = await files.LatestStateAsync(token);
        if (state is not null && GlobalStep(state.Progress.Position, stepsPerEpoch) > request.FromStep)
            return Result(state.Progress, stepsPerEpoch, lastLoss: null, []);

        var clock = new StageClock();
        var inputs = await files.LoadAsync(request.Weights, request.Prepared, token, clock);
        var outcome = clock.Time(Stages.Training, () => engine.Train(inputs.Recipe, inputs.Dataset, state, inputs.Features, request.MaxSteps, token, OnStep));

        var progress = outcome.State.Progress;
        long sequence = GlobalStep(progress.Position, stepsPerEpoch);
        await clock.TimeAsync(Stages.Checkpoints, async () =>
        {
            await checkpoints.SaveAsync(job.JobId, sequence, outcome.State.Parts, JsonSerializer.SerializeToElement(progress, JobSpecReader.Json), token);
            var best = progress.Best(job.Spec.StoppingMetric());
            await checkpoints.PruneAsync(job.JobId, options.Value.CheckpointsToKeep,
                best is null ? null : (best.Epoch + 1L) * stepsPerEpoch, token);
        });
        await metrics.RecordAsync(job.JobId, job.Spec.Training.Epochs, progress.History, state?.Progress.History.Count ?? 0, token);
        return Result(progress, stepsPerEpoch, outcome.LastLoss, clock.Times);
    }

    /// <summary>Called after every optimisation step (progress reporting, fault injection in tests).</summary>
    protected virtual void OnStep(StepReport report)
    {
    }

    /// <summary>Steps done since the start: the checkpoint sequence.</summary>
    public static long GlobalStep(TrainerPosition position, int stepsPerEpoch) => (long)position.Epoch * stepsPerEpoch + position.Step;

    private static TrainResult Result(TrainingProgress progress, int stepsPerEpoch, double? lastLoss, IReadOnlyList<StageTime> times)
    {
        var position = progress.Position;
        // Step 0 of epoch e > 0: epoch e - 1 has just completed.
        bool epochCompleted = position.Step == 0 && position.Epoch > 0;
        return new TrainResult(GlobalStep(position, stepsPerEpoch), position.Epoch, position.Step, stepsPerEpoch, epochCompleted, progress.History, lastLoss, times,
            WorkerIdentity.Current);
    }
}
