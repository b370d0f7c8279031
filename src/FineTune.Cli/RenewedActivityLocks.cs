using System.Collections.Concurrent;
using DurableTask.Core;
using Microsoft.Extensions.Logging;

namespace FineTune.Cli;

/// <summary>
/// An orchestration service whose locked activities keep their lock while they run, as the Durable Task Framework's own
/// dispatcher keeps them: the SDK's sidecar dispatcher never renews one. Without this an activity that runs longer than the
/// provider's visibility timeout (Azure Storage's queue message, 20 s here: <see cref="AzureStorageSidecar.Settings"/>)
/// reappears on the queue while it runs, another worker of the hub runs it again at the same time, and the first to finish
/// deletes the message under the other ("PopReceiptMismatch", logged as failures, then redelivered). Each lock is renewed
/// halfway to its expiry, and the renewal ends before the work item completes or is abandoned, whose pop receipt it would
/// otherwise change under them. Everything else is the inner service's.
/// </summary>
internal sealed partial class RenewedActivityLocks(IOrchestrationService inner, ILogger<RenewedActivityLocks> logger) : IOrchestrationService
{
    private readonly ConcurrentDictionary<string, (CancellationTokenSource Stop, Task Renewing)> _renewals = new(StringComparer.Ordinal);

    /// <summary>The longest wait between renewals: the first lock's expiry is the storage server's clock, not this machine's.</summary>
    private static readonly TimeSpan MaxRenewalInterval = TimeSpan.FromSeconds(5);

    /// <summary>The shortest: a renewal that failed is tried again before the lock runs out, not in a busy loop.</summary>
    private static readonly TimeSpan MinRenewalInterval = TimeSpan.FromMilliseconds(50);

    public async Task<TaskActivityWorkItem> LockNextTaskActivityWorkItem(TimeSpan receiveTimeout, CancellationToken cancellationToken)
    {
        var workItem = await inner.LockNextTaskActivityWorkItem(receiveTimeout, cancellationToken);
        // A lock that never expires (the in-memory service's) needs no renewal.
        if (workItem is not null && workItem.LockedUntilUtc - DateTime.UtcNow < TimeSpan.FromDays(1))
        {
            var stop = new CancellationTokenSource();
            _renewals[workItem.Id] = (stop, Task.Run(() => RenewAsync(workItem, stop.Token), CancellationToken.None));
        }
        return workItem!;
    }

    private async Task RenewAsync(TaskActivityWorkItem workItem, CancellationToken stop)
    {
        try
        {
            do
            {
                var lease = workItem.LockedUntilUtc - DateTime.UtcNow;
                await Task.Delay(lease <= TimeSpan.Zero ? TimeSpan.Zero : TimeSpan.FromTicks(Math.Clamp(lease.Ticks / 2, MinRenewalInterval.Ticks, MaxRenewalInterval.Ticks)), stop);
                try
                {
                    workItem = await inner.RenewTaskActivityWorkItemLockAsync(workItem);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    // Tried again while the lock lasts (a storage hiccup); past it, at worst the activity runs twice, as it
                    // would without renewal (its work is idempotent).
                    RenewalFailed(workItem.Id, e);
                }
            }
            // The provider expires a work item it no longer holds (LockedUntilUtc now), which ends the renewals.
            while (workItem.LockedUntilUtc > DateTime.UtcNow);
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
    }

    /// <summary>The renewal stopped, and any renewal under way finished, before the work item's lock is used to end it.</summary>
    private async Task StopRenewingAsync(TaskActivityWorkItem workItem)
    {
        if (!_renewals.TryRemove(workItem.Id, out var renewal)) return;
        await renewal.Stop.CancelAsync();
        await renewal.Renewing;
        renewal.Stop.Dispose();
    }

    public async Task CompleteTaskActivityWorkItemAsync(TaskActivityWorkItem workItem, TaskMessage responseMessage)
    {
        await StopRenewingAsync(workItem);
        await inner.CompleteTaskActivityWorkItemAsync(workItem, responseMessage);
    }

    public async Task AbandonTaskActivityWorkItemAsync(TaskActivityWorkItem workItem)
    {
        await StopRenewingAsync(workItem);
        await inner.AbandonTaskActivityWorkItemAsync(workItem);
    }

    public Task<TaskActivityWorkItem> RenewTaskActivityWorkItemLockAsync(TaskActivityWorkItem workItem) => inner.RenewTaskActivityWorkItemLockAsync(workItem);

    public Task StartAsync() => inner.StartAsync();

    public Task StopAsync() => inner.StopAsync();

    public Task StopAsync(bool isForced) => inner.StopAsync(isForced);

    public Task CreateAsync() => inner.CreateAsync();

    public Task CreateAsync(bool recreateInstanceStore) => inner.CreateAsync(recreateInstanceStore);

    public Task CreateIfNotExistsAsync() => inner.CreateIfNotExistsAsync();

    public Task DeleteAsync() => inner.DeleteAsync();

    public Task DeleteAsync(bool deleteInstanceStore) => inner.DeleteAsync(deleteInstanceStore);

    public int TaskOrchestrationDispatcherCount => inner.TaskOrchestrationDispatcherCount;

    public int MaxConcurrentTaskOrchestrationWorkItems => inner.MaxConcurrentTaskOrchestrationWorkItems;

    public BehaviorOnContinueAsNew EventBehaviourForContinueAsNew => inner.EventBehaviourForContinueAsNew;

    public bool IsMaxMessageCountExceeded(int currentMessageCount, OrchestrationRuntimeState runtimeState) =>
        inner.IsMaxMessageCountExceeded(currentMessageCount, runtimeState);

    public int GetDelayInSecondsAfterOnProcessException(Exception exception) => inner.GetDelayInSecondsAfterOnProcessException(exception);

    public int GetDelayInSecondsAfterOnFetchException(Exception exception) => inner.GetDelayInSecondsAfterOnFetchException(exception);

    public Task<TaskOrchestrationWorkItem> LockNextTaskOrchestrationWorkItemAsync(TimeSpan receiveTimeout, CancellationToken cancellationToken) =>
        inner.LockNextTaskOrchestrationWorkItemAsync(receiveTimeout, cancellationToken);

    public Task RenewTaskOrchestrationWorkItemLockAsync(TaskOrchestrationWorkItem workItem) => inner.RenewTaskOrchestrationWorkItemLockAsync(workItem);

    public Task CompleteTaskOrchestrationWorkItemAsync(TaskOrchestrationWorkItem workItem, OrchestrationRuntimeState newOrchestrationRuntimeState,
        IList<TaskMessage> outboundMessages, IList<TaskMessage> orchestratorMessages, IList<TaskMessage> timerMessages, TaskMessage continuedAsNewMessage,
        OrchestrationState orchestrationState) =>
        inner.CompleteTaskOrchestrationWorkItemAsync(workItem, newOrchestrationRuntimeState, outboundMessages, orchestratorMessages, timerMessages,
            continuedAsNewMessage, orchestrationState);

    public Task AbandonTaskOrchestrationWorkItemAsync(TaskOrchestrationWorkItem workItem) => inner.AbandonTaskOrchestrationWorkItemAsync(workItem);

    public Task ReleaseTaskOrchestrationWorkItemAsync(TaskOrchestrationWorkItem workItem) => inner.ReleaseTaskOrchestrationWorkItemAsync(workItem);

    public int TaskActivityDispatcherCount => inner.TaskActivityDispatcherCount;

    public int MaxConcurrentTaskActivityWorkItems => inner.MaxConcurrentTaskActivityWorkItems;

    [LoggerMessage(Level = LogLevel.Warning, Message = "Activity work item {WorkItemId}: its lock could not be renewed")]
    private partial void RenewalFailed(string workItemId, Exception exception);
}
