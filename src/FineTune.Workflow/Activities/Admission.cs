using FineTune.Workflow.Services;
using Microsoft.DurableTask;

namespace FineTune.Workflow.Activities;

/// <summary>Asks this worker for a run slot for the calling orchestration (<see cref="RunSlots"/>); answers at once, never waits.</summary>
[DurableTask(ActivityNames.AdmitRun)]
public sealed class AdmitRun(RunSlots slots) : TaskActivity<string, Admission>
{
    public override Task<Admission> RunAsync(TaskActivityContext context, string holder) => Task.FromResult(slots.TryAdmit(holder));
}

/// <summary>Frees the calling orchestration's run slot: it has ended, or has no heavy work left before its next admission.</summary>
[DurableTask(ActivityNames.ReleaseRun)]
public sealed class ReleaseRun(RunSlots slots) : TaskActivity<string, bool>
{
    public override Task<bool> RunAsync(TaskActivityContext context, string holder)
    {
        slots.Release(holder);
        return Task.FromResult(true);
    }
}
