using FineTune.Workflow.Jobs;
using FineTune.Workflow.Services;
using Microsoft.DurableTask;
using Microsoft.DurableTask.Client;

namespace FineTune.Workflow.Orchestration;

/// <summary>What starting a run did: started it, or found a run of that id live or completed.</summary>
public sealed record StartOutcome(string JobId, bool Started, string? ExistingStatus);

/// <summary>A durable backend that can tell whether a run holds its id and schedule a new one.</summary>
public interface IRunScheduler
{
    /// <summary>
    /// The status of the run holding <paramref name="jobId"/>: pending, running or completed; null when there is
    /// none or it ended without completing (failed, terminated), which the same id may start again (resuming
    /// from its checkpoints).
    /// </summary>
    Task<string?> HolderStatusAsync(string jobId, CancellationToken cancellationToken);

    Task ScheduleAsync(FineTuneJob job, CancellationToken cancellationToken);

    /// <summary>Ends the run's orchestration where it is (it schedules nothing more); running activities are not told.</summary>
    Task TerminateAsync(string jobId, string reason, CancellationToken cancellationToken);

    /// <summary>Forgets the run's durable history (its instance, inputs, outputs); nothing when there is none.</summary>
    Task PurgeHistoryAsync(string jobId, CancellationToken cancellationToken);
}

/// <summary>
/// The one way a run starts, for the HTTP API, the blob trigger and the command line: spec → fits this worker's memory?
/// → id → bound to this spec? → held? → schedule. A spec estimated past the memory budget is refused with the estimate
/// (<see cref="InvalidJobSpecException"/>: HTTP 400, exit 2); a spec other than the one the id is bound to with both
/// hashes (<see cref="SpecConflictException"/>: HTTP 409, exit 2).
/// </summary>
public static class RunStarter
{
    /// <summary>The orchestration that runs a job: a sweep's, or a single run's.</summary>
    public static string OrchestratorOf(FineTuneJob job) => job.Spec.Sweep is null ? FineTuneOrchestrator.Name : SweepOrchestrator.Name;

    /// <summary>Whether an orchestration is a run users started (a run or a sweep), not a sweep's trial.</summary>
    public static bool IsRun(string orchestrationName) => orchestrationName is FineTuneOrchestrator.Name or SweepOrchestrator.Name;

    public static async Task<StartOutcome> StartAsync(this IRunScheduler scheduler, JobSpec spec, RunControl runs, CancellationToken cancellationToken)
    {
        if (JobMemory.Check(spec, runs.Options) is { Count: > 0 } tooBig) throw new InvalidJobSpecException(tooBig);
        string id = spec.JobId ?? JobSpecReader.DeriveJobId(spec);
        spec = spec with { JobId = id };
        await runs.BindSpecAsync(id, spec, cancellationToken);
        if (await scheduler.HolderStatusAsync(id, cancellationToken) is { } status) return new StartOutcome(id, false, status);
        // Starting again after a cancel (same spec): the new run must not stop at once, nor start beside the old one's chunk.
        if (await runs.ClearControlAsync(new Storage.RunLayout(id), cancellationToken) is { } stopping) return new StartOutcome(id, false, stopping);
        var job = new FineTuneJob(id, spec);
        await scheduler.ScheduleAsync(job, cancellationToken);
        WorkflowMetrics.RunStarted(WorkflowMetrics.KindOf(OrchestratorOf(job)));
        return new StartOutcome(id, true, null);
    }
}

/// <summary>The Durable Task SDK's client: Durable Functions, the in-process test host, the in-memory backend.</summary>
public sealed class DurableClientScheduler(DurableTaskClient client) : IRunScheduler
{
    public async Task<string?> HolderStatusAsync(string jobId, CancellationToken cancellationToken) =>
        await client.GetInstanceAsync(jobId, getInputsAndOutputs: false, cancellationToken) is { } instance
        && instance.RuntimeStatus is not (OrchestrationRuntimeStatus.Failed or OrchestrationRuntimeStatus.Terminated)
            ? instance.RuntimeStatus.ToString()
            : null;

    public Task ScheduleAsync(FineTuneJob job, CancellationToken cancellationToken) =>
        client.ScheduleNewOrchestrationInstanceAsync(RunStarter.OrchestratorOf(job), job, new StartOrchestrationOptions(job.JobId), cancellationToken);

    /// <summary>With its sub-orchestrations: a sweep's trials end with it.</summary>
    public Task TerminateAsync(string jobId, string reason, CancellationToken cancellationToken) =>
        client.TerminateInstanceAsync(jobId, new TerminateInstanceOptions { Output = reason, Recursive = true }, cancellationToken);

    public Task PurgeHistoryAsync(string jobId, CancellationToken cancellationToken) => client.PurgeInstanceAsync(jobId, cancellation: cancellationToken);
}
