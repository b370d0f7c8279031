using FineTune.Workflow.Services;
using Microsoft.DurableTask;

namespace FineTune.Workflow.Activities;

/// <summary>Frees the run's slot on this worker (<see cref="RunSlots.Leave"/>) when it ends, completed or failed.</summary>
[DurableTask(ActivityNames.LeaveRun)]
public sealed class LeaveRun(RunSlots slots) : TaskActivity<string, bool>
{
    public override Task<bool> RunAsync(TaskActivityContext context, string runId)
    {
        slots.Leave(runId);
        return Task.FromResult(true);
    }
}
