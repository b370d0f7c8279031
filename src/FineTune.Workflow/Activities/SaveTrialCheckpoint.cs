using System.Text.Json;
using FineTune.Core.Engine;
using FineTune.Storage.Checkpoints;
using FineTune.Workflow.Jobs;
using FineTune.Workflow.Orchestration;
using FineTune.Workflow.Services;
using Microsoft.DurableTask;

namespace FineTune.Workflow.Activities;

/// <summary>
/// A stacked trial's best epoch stored as a checkpoint of the trial's own run (<see cref="FineTuneEngine.TrialState"/>), so
/// the sweep evaluates and publishes it as it would a trial trained alone. Idempotent: the checkpoint store refuses nothing
/// when the same bytes are saved again.
/// </summary>
[DurableTask(ActivityNames.SaveTrialCheckpoint)]
public sealed class SaveTrialCheckpoint(WorkerFiles worker, FineTuneEngine engine, CheckpointStore checkpoints, WorkerStopping stopping)
    : TaskActivity<TrialCheckpointRequest, long>
{
    public override async Task<long> RunAsync(TaskActivityContext context, TrialCheckpointRequest request)
    {
        var token = stopping.Token;
        var job = request.Stack;
        var carried = job.Carried ?? throw new ArgumentException("a stack starts from its sweep's weights and prepared model", nameof(request));
        var latest = await TrainStackedTrials.LatestAsync(checkpoints, job.JobId, token)
            ?? throw new InvalidOperationException($"stack {job.JobId} has no checkpoint to take trial {request.Trial.JobId} from");
        var inputs = await worker.For(job).LoadAsync(carried.Weights, carried.Prepared, token);
        var state = engine.TrialState(request.Trial.Spec.ToRecipe(inputs.Recipe.WeightsPath), request.Member, inputs.Dataset, latest.State);
        await checkpoints.SaveAsync(request.Trial.JobId, request.Sequence, state.Parts, JsonSerializer.SerializeToElement(state.Progress, WireJson.Options), token);
        return request.Sequence;
    }
}
