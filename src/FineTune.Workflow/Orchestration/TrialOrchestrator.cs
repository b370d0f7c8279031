using FineTune.Core.Training;
using FineTune.Workflow.Activities;
using FineTune.Workflow.Jobs;
using Microsoft.DurableTask;

namespace FineTune.Workflow.Orchestration;

/// <summary>
/// One trial of a sweep, up to a rung: the training chunks of the recipe from the trial's latest checkpoint (its own
/// checkpoints, so a trial resumes where it stopped). Its weights and prepared model come from the sweep, which
/// computed them once per feature group; evaluation and publishing are the sweep's, for the best trial only.
/// </summary>
[DurableTask(Name)]
public sealed class TrialOrchestrator : TaskOrchestrator<TrialRequest, TrialOutcome>
{
    public const string Name = "FineTuneTrial";

    /// <summary>The trial's chunks up to the rung, once it holds a slot of its own (each trial counts as a run).</summary>
    public override async Task<TrialOutcome> RunAsync(TaskOrchestrationContext context, TrialRequest request) =>
        await FineTuneOrchestrator.AdmittedAsync(context, request.Trial,
            position => new RunStatus(RunStage.Queued, 0, request.Trial.Spec.Training.Epochs, 0, 0, null, null, null, null, null, QueuePosition: position),
            () => TrainAsync(context, request), _ => true) ?? throw new InvalidOperationException("a trial does not continue as new");

    private static async Task<TrialOutcome> TrainAsync(TaskOrchestrationContext context, TrialRequest request)
    {
        var job = request.Trial;
        var carried = job.Carried ?? throw new ArgumentException("a trial starts from its sweep's weights and prepared model", nameof(request));
        var training = job.Spec.Training;
        int perEpoch = carried.Prepared.StepsPerEpoch;
        long end = (long)training.Epochs * perEpoch;
        long target = Math.Min(end, (long)request.UntilEpoch * perEpoch);
        long step = request.FromStep;
        IReadOnlyList<EpochMetrics> history = carried.History;
        var workers = new List<string>();
        var times = new List<StageTime>();
        bool stoppedEarly = false;
        var metric = job.Spec.StoppingMetric();
        while (step < target)
        {
#pragma warning disable DURABLE2003 // the analyzer knows a class-based activity by its class name only
            var result = await context.CallActivityAsync<TrainResult>(ActivityNames.TrainChunk,
                new TrainRequest(job, carried.Weights, carried.Prepared, step, (int)Math.Min(training.MaxStepsPerChunk, target - step)), FineTuneOrchestrator.Retry);
#pragma warning restore DURABLE2003
            if (result.GlobalStep <= step)
                throw new InvalidOperationException($"trial {job.JobId}: a training chunk from step {step} did not advance (its checkpoint is at {result.GlobalStep})");
            history = TrainingHistory.Merged(history, result.History);
            step = result.GlobalStep;
            times.AddRange(result.Times);
            if (result.Worker is { } worker && !workers.Contains(worker)) workers.Add(worker);
            if (result.EpochCompleted && TrainingHistory.ShouldStop(history, metric, training.EarlyStopping?.Patience))
            {
                stoppedEarly = true;
                break;
            }
        }
        return new TrialOutcome(job.JobId, step, history, Finished: stoppedEarly || step >= end, stoppedEarly, workers, Stages.Total(times));
    }
}
