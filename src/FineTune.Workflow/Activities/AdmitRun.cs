using FineTune.Workflow.Jobs;
using FineTune.Workflow.Orchestration;
using FineTune.Workflow.Services;
using Microsoft.DurableTask;
using Microsoft.Extensions.Options;

namespace FineTune.Workflow.Activities;

/// <summary>
/// Asks this worker for a slot for the run (<see cref="RunSlots"/>), weighed by the run's estimated peak memory; waits a
/// few seconds for one at most, then answers with the run's place in the queue.
/// </summary>
[DurableTask(ActivityNames.AdmitRun)]
public sealed class AdmitRun(RunSlots slots, IOptions<WorkflowOptions> options, WorkerStopping stopping) : TaskActivity<FineTuneJob, Admission>
{
    public override Task<Admission> RunAsync(TaskActivityContext context, FineTuneJob job) =>
        slots.EnterAsync(job.JobId, JobMemory.Estimate(job.Spec, options.Value).TotalBytes, stopping.Token);
}
