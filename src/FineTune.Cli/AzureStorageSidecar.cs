using DurableTask.AzureStorage;
using FineTune.Workflow.Services;
using Microsoft.DurableTask;
using Microsoft.DurableTask.Client;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace FineTune.Cli;

/// <summary>
/// Every <c>--storage</c> command's durable backend: the Durable Task Framework's Azure Storage provider (Durable Functions'
/// own; its state in the storage account, so a killed process's run is picked up by the next), behind this process's
/// <see cref="DurableSidecar"/>, so every command gets the same <see cref="DurableTaskClient"/> as in memory.
/// </summary>
internal static class AzureStorageSidecar
{
    /// <summary>The task hub local runs and workers share unless told otherwise (<c>--task-hub</c>).</summary>
    public const string DefaultTaskHub = "FineTuneCli";

    /// <summary>
    /// The provider's settings for local commands, tuned for a few local workers: messages of a dead process reappear
    /// after 20 s, not 5 minutes; queues are polled every second.
    /// </summary>
    public static AzureStorageOrchestrationServiceSettings Settings(string connectionString, string taskHub, ILoggerFactory logging) => new()
    {
        TaskHubName = taskHub,
        StorageAccountClientProvider = new StorageAccountClientProvider(connectionString),
        WorkItemQueueVisibilityTimeout = TimeSpan.FromSeconds(20),
        ControlQueueVisibilityTimeout = TimeSpan.FromSeconds(20),
        MaxQueuePollingInterval = TimeSpan.FromSeconds(1),
        // Training uses every core already; a process taking more activities than it has cores only queues them,
        // while other workers of the hub (finetune worker) could run them.
        MaxConcurrentTaskActivityWorkItems = Environment.ProcessorCount,
        // The provider names a worker by its machine by default, and partition leases by their owner's name: two processes
        // on one machine then both took every partition and wrote one orchestration's history at once ("split brain"; seen
        // with a sweep's stacks on `finetune worker`s: an activity's result read as another's).
        WorkerId = WorkerIdentity.Current,
        // Partitions owned through a table, handed over only once released: with blob leases a worker joining the hub took
        // partitions still being processed by another (split brain again, while partitions rebalanced).
        UseTablePartitionManagement = true,
        LoggerFactory = logging,
    };

    /// <param name="tasks">the orchestrators and activities this process runs for the task hub; null: none, a client only (the
    /// sidecar dispatches no work until a worker connects, so it takes no partition from the hub's workers)</param>
    public static IServiceCollection AddAzureStorageDurableTask(IServiceCollection services, string connectionString, string taskHub,
        Action<DurableTaskRegistry>? tasks) =>
        DurableSidecar.Add(services, tasks, async logging =>
        {
            var service = new AzureStorageOrchestrationService(Settings(connectionString, taskHub, logging));
            await service.CreateIfNotExistsAsync();
            return service;
        });
}
