using DurableTask.AzureStorage;
using DurableTask.Core;
using FineTune.Workflow;
using FineTune.Workflow.Orchestration;
using Microsoft.DurableTask;
using Microsoft.DurableTask.Client;
using Microsoft.DurableTask.Converters;
using Microsoft.DurableTask.Worker;
using Microsoft.DurableTask.Worker.Shims;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using CoreDataConverter = DurableTask.Core.Serializing.DataConverter;

namespace FineTune.Cli;

/// <summary>A run as the durable backend reports it; payloads stay serialized as the orchestration wrote them.</summary>
/// <param name="ErrorKind">a failed run's <see cref="ErrorKinds"/> value; null otherwise</param>
internal sealed record RunSnapshot(bool Ended, bool Succeeded, string Status, string? CustomStatus, string? Output, string? Failure, string? ErrorKind = null);

/// <summary>
/// The durable backend behind a local run. Runs start through <see cref="RunStarter"/>; a run the backend already
/// holds (a persistent backend after a crash) is followed instead.
/// </summary>
internal interface IRunBackend : IRunScheduler, IAsyncDisposable
{
    Task<RunSnapshot?> GetAsync(string id, CancellationToken cancellationToken);

    /// <summary>How often a follower asks for the run's state: what a query costs on this backend.</summary>
    TimeSpan PollInterval { get; }
}

/// <summary>The in-memory backend: nothing outlives the process but the checkpoints in the artifact store.</summary>
internal sealed class InMemoryBackend(DurableTaskClient client) : IRunBackend
{
    private readonly DurableClientScheduler _scheduler = new(client);

    public Task<string?> HolderStatusAsync(string jobId, CancellationToken cancellationToken) => _scheduler.HolderStatusAsync(jobId, cancellationToken);

    public Task ScheduleAsync(FineTuneJob job, CancellationToken cancellationToken) => _scheduler.ScheduleAsync(job, cancellationToken);

    public Task TerminateAsync(string jobId, string reason, CancellationToken cancellationToken) => _scheduler.TerminateAsync(jobId, reason, cancellationToken);

    public Task PurgeHistoryAsync(string jobId, CancellationToken cancellationToken) => _scheduler.PurgeHistoryAsync(jobId, cancellationToken);

    public async Task<RunSnapshot?> GetAsync(string id, CancellationToken cancellationToken)
    {
        var state = await client.GetInstanceAsync(id, getInputsAndOutputs: true, cancellationToken);
        return state is null ? null : new RunSnapshot(state.IsCompleted, state.RuntimeStatus == OrchestrationRuntimeStatus.Completed,
            state.RuntimeStatus.ToString(), state.SerializedCustomStatus, state.SerializedOutput, Innermost(state.FailureDetails), ErrorKinds.Of(state.FailureDetails));
    }

    /// <summary>A query goes to the sidecar in this process over loopback, well under a millisecond: often enough that a finished run is reported at once.</summary>
    public TimeSpan PollInterval => TimeSpan.FromMilliseconds(50);

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;

    private static string? Innermost(TaskFailureDetails? failure)
    {
        while (failure?.InnerFailure is not null) failure = failure.InnerFailure;
        return failure?.ErrorMessage;
    }
}

/// <summary>The in-memory backend seen from another process: it kept no run, so there is nothing to hold an id or to purge.</summary>
internal sealed class NoHistoryBackend : IRunBackend
{
    public Task<string?> HolderStatusAsync(string jobId, CancellationToken cancellationToken) => Task.FromResult<string?>(null);

    public Task ScheduleAsync(FineTuneJob job, CancellationToken cancellationToken) =>
        throw new InvalidOperationException("the in-memory backend runs only within its own process");

    public Task TerminateAsync(string jobId, string reason, CancellationToken cancellationToken) => Task.CompletedTask;

    public Task PurgeHistoryAsync(string jobId, CancellationToken cancellationToken) => Task.CompletedTask;

    public Task<RunSnapshot?> GetAsync(string id, CancellationToken cancellationToken) => Task.FromResult<RunSnapshot?>(null);

    public TimeSpan PollInterval => TimeSpan.FromMilliseconds(50);

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}

/// <summary>
/// The Durable Task Framework's Azure Storage provider, the one Durable Functions uses, running the same
/// class-based orchestrator and activities through the Durable Task SDK's shims. Its state lives in the
/// storage account (Azurite locally), so a killed process's run is picked up again by the next one. Tuned for
/// a single local worker: messages of a dead process reappear after 20 s, not 5 minutes; queues are polled
/// every second; duplicate starts are refused while a run is pending, running or completed.
/// </summary>
internal sealed class AzureStorageBackend : IRunBackend
{
    /// <summary>The statuses in which a run holds its id (<see cref="IRunScheduler.HolderStatusAsync"/>).</summary>
    private static readonly OrchestrationStatus[] Holding =
        [OrchestrationStatus.Pending, OrchestrationStatus.Running, OrchestrationStatus.Completed, OrchestrationStatus.ContinuedAsNew];
    private readonly AzureStorageOrchestrationService _service;
    private readonly TaskHubWorker? _worker;
    private readonly TaskHubClient _client;

    private AzureStorageBackend(AzureStorageOrchestrationService service, TaskHubWorker? worker, TaskHubClient client)
    {
        _service = service;
        _worker = worker;
        _client = client;
    }

    /// <summary>The task hub local runs and workers share unless told otherwise (<c>--task-hub</c>).</summary>
    public const string DefaultTaskHub = "FineTuneCli";

    /// <summary>The provider's settings for local commands (<c>train</c>, <c>sweep</c>, <c>worker</c>, <c>serve</c>): tuned for a few local workers.</summary>
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
        WorkerId = Workflow.Services.WorkerIdentity.Current,
        // Partitions owned through a table, handed over only once released: with blob leases a worker joining the hub took
        // partitions still being processed by another (split brain again, while partitions rebalanced).
        UseTablePartitionManagement = true,
        LoggerFactory = logging,
    };

    /// <summary>The task hub's client only, running nothing: for commands that cancel or purge runs.</summary>
    public static async Task<AzureStorageBackend> ConnectAsync(string connectionString, string taskHub, ILoggerFactory logging)
    {
        var service = await ServiceAsync(connectionString, taskHub, logging);
        return new AzureStorageBackend(service, null, new TaskHubClient(service, new SdkJsonConverter(), logging));
    }

    public static async Task<AzureStorageBackend> StartAsync(string connectionString, string taskHub, IServiceProvider services, ILoggerFactory logging)
    {
        var service = await ServiceAsync(connectionString, taskHub, logging);
        var shims = new DurableTaskShimFactory(new DurableTaskWorkerOptions(), logging);
        var worker = new TaskHubWorker(service, logging);
        foreach (var (name, type) in WorkflowServices.Orchestrators)
            worker.AddTaskOrchestrations(new Creator<TaskOrchestration>(name,
                () => shims.CreateOrchestration(name, (ITaskOrchestrator)Activator.CreateInstance(type)!, parent: null)));
        foreach (var (name, type) in WorkflowServices.Activities)
            worker.AddTaskActivities(new Creator<TaskActivity>(name,
                () => shims.CreateActivity(name, (ITaskActivity)ActivatorUtilities.CreateInstance(services, type))));
        await worker.StartAsync();
        return new AzureStorageBackend(service, worker, new TaskHubClient(service, new SdkJsonConverter(), logging));
    }

    private static async Task<AzureStorageOrchestrationService> ServiceAsync(string connectionString, string taskHub, ILoggerFactory logging)
    {
        var service = new AzureStorageOrchestrationService(Settings(connectionString, taskHub, logging));
        await service.CreateIfNotExistsAsync();
        return service;
    }

    public async Task<string?> HolderStatusAsync(string jobId, CancellationToken cancellationToken) =>
        await _client.GetOrchestrationStateAsync(jobId) is { } state && Holding.Contains(state.OrchestrationStatus) ? state.OrchestrationStatus.ToString() : null;

    public async Task ScheduleAsync(FineTuneJob job, CancellationToken cancellationToken)
    {
        try
        {
            await _client.CreateOrchestrationInstanceAsync(RunStarter.OrchestratorOf(job), "", job.JobId, job, tags: null, dedupeStatuses: Holding);
        }
        catch (DurableTask.Core.Exceptions.OrchestrationAlreadyExistsException)
        {
            // Another process started it since the check: follow that one.
        }
    }

    public Task TerminateAsync(string jobId, string reason, CancellationToken cancellationToken) => _client.TerminateInstanceAsync(new OrchestrationInstance { InstanceId = jobId }, reason);

    public Task PurgeHistoryAsync(string jobId, CancellationToken cancellationToken) => _service.PurgeInstanceHistoryAsync(jobId);

    public async Task<RunSnapshot?> GetAsync(string id, CancellationToken cancellationToken)
    {
        var state = await _client.GetOrchestrationStateAsync(id);
        if (state is null) return null;
        bool ended = state.OrchestrationStatus is OrchestrationStatus.Completed or OrchestrationStatus.Failed
            or OrchestrationStatus.Terminated or OrchestrationStatus.Canceled;
        return new RunSnapshot(ended, state.OrchestrationStatus == OrchestrationStatus.Completed, state.OrchestrationStatus.ToString(),
            state.Status, state.Output, state.FailureDetails?.ErrorMessage
                ?? (state.OrchestrationStatus is OrchestrationStatus.Failed or OrchestrationStatus.Terminated ? state.Output : null),
            state.OrchestrationStatus == OrchestrationStatus.Failed ? KindOf(state.FailureDetails) : null);
    }

    /// <summary>A query reads the storage account's instances table.</summary>
    public TimeSpan PollInterval => TimeSpan.FromMilliseconds(300);

    /// <summary>Waits for the work items in flight (the caller has told a training chunk to stop at its next step).</summary>
    public async ValueTask DisposeAsync()
    {
        if (_worker is not null) await _worker.StopAsync(isForced: false);
    }

    /// <summary><see cref="ErrorKinds.Of"/> for the framework's own failure details (the orchestration's wraps the activity's).</summary>
    private static string KindOf(FailureDetails? failure)
    {
        for (var level = failure; level is not null; level = level.InnerFailure)
            if (level.IsCausedBy<Core.BadInputException>()) return ErrorKinds.BadInput;
        return ErrorKinds.System;
    }

    /// <summary>A fresh shim for every execution, as the framework expects.</summary>
    private sealed class Creator<T> : ObjectCreator<T>
    {
        private readonly Func<T> _create;

        public Creator(string name, Func<T> create)
        {
            Name = name;
            Version = "";
            _create = create;
        }

        public override T Create() => _create();
    }

    /// <summary>The client serializes inputs as the SDK's shims read them (System.Text.Json).</summary>
    private sealed class SdkJsonConverter : CoreDataConverter
    {
        public override string Serialize(object value) => JsonDataConverter.Default.Serialize(value)!;
        public override string Serialize(object value, bool formatted) => Serialize(value);
        public override object Deserialize(string data, Type objectType) => JsonDataConverter.Default.Deserialize(data, objectType)!;
    }
}
