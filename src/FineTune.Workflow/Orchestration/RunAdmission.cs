using FineTune.Workflow.Activities;
using FineTune.Workflow.Services;
using Microsoft.DurableTask;

namespace FineTune.Workflow.Orchestration;

/// <summary>
/// How an orchestration takes and gives back its run slot (<see cref="RunSlots"/>, held under its instance id). The
/// worker decides; the orchestration asks, and while queued says so and waits on a durable timer: 1 s, doubling, at
/// most the worker's poll interval, so a long wait adds a few history events a minute.
/// </summary>
internal static class RunAdmission
{
    public static async Task AdmitAsync(TaskOrchestrationContext context, Action<int> queued)
    {
        for (int attempt = 0; ; attempt++)
        {
            var answer = await context.CallActivityAsync<Admission>(ActivityNames.AdmitRun, context.InstanceId, FineTuneOrchestrator.Retry);
            if (answer.Admitted) return;
            queued(answer.Position);
            double seconds = Math.Min(answer.RetryAfterSeconds, Math.Pow(2, Math.Min(attempt, 16)));
            await context.CreateTimer(TimeSpan.FromSeconds(seconds), CancellationToken.None);
        }
    }

    public static Task ReleaseAsync(TaskOrchestrationContext context) =>
        context.CallActivityAsync<bool>(ActivityNames.ReleaseRun, context.InstanceId, FineTuneOrchestrator.Retry);

    /// <summary>Runs <paramref name="work"/> holding a slot, released however it ends (but not when it continues as new: the next generation keeps it).</summary>
    public static async Task<T> HoldingSlotAsync<T>(TaskOrchestrationContext context, Action<int> queued, Func<Task<T>> work, Func<T, bool>? continuesAsNew = null)
    {
        await AdmitAsync(context, queued);
        bool keep = false;
        try
        {
            var result = await work();
            keep = continuesAsNew?.Invoke(result) ?? false;
            return result;
        }
        finally
        {
            if (!keep) await ReleaseAsync(context);
        }
    }
}
