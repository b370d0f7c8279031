using System.Net;
using System.Net.Sockets;
using DurableTask.AzureStorage;
using DurableTask.Core;
using FineTune.Workflow.Services;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.DurableTask;
using Microsoft.DurableTask.Client;
using Microsoft.DurableTask.Testing.Sidecar.Grpc;
using Microsoft.DurableTask.Worker;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace FineTune.Cli;

/// <summary>
/// Every <c>--storage</c> command's durable backend: the Durable Task Framework's Azure Storage provider (Durable Functions'
/// own; its state in the storage account, so a killed process's run is picked up by the next), put behind the Durable Task
/// SDK's gRPC client and worker by the sidecar the in-process test host uses for its in-memory backend, so every command
/// gets the same <see cref="DurableTaskClient"/> either way.
/// The sidecar listens on a loopback port of its own.
/// </summary>
/// <param name="dispatches">whether the sidecar hands the hub's work to a worker of this process; without one it neither
/// starts the provider's partition management nor stops it (stopping a provider never started throws)</param>
internal sealed class AzureStorageSidecar(string address, string connectionString, string taskHub, bool dispatches, ILoggerFactory logging) : IHostedService, IAsyncDisposable
{
    private WebApplication? _sidecar;

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
        Action<DurableTaskRegistry>? tasks)
    {
        string address = $"http://127.0.0.1:{FreePort()}";
        // Registered before the worker, so the sidecar is up when the worker connects.
        services.AddHostedService(sp => new AzureStorageSidecar(address, connectionString, taskHub, dispatches: tasks is not null, sp.GetRequiredService<ILoggerFactory>()));
        if (tasks is not null)
        {
            services.AddDurableTaskWorker(worker =>
            {
                worker.UseGrpc(address);
                worker.AddTasks(tasks);
            });
        }
        services.AddDurableTaskClient(client =>
        {
            client.UseGrpc(address);
            client.RegisterDirectly();
        });
        return services;
    }

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var service = new AzureStorageOrchestrationService(Settings(connectionString, taskHub, logging));
        await service.CreateIfNotExistsAsync();
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton(logging);
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, new Uri(address).Port, listen => listen.Protocols = HttpProtocols.Http2));
        builder.Services.AddGrpc();
        builder.Services.AddSingleton<IOrchestrationService>(service);
        builder.Services.AddSingleton<IOrchestrationServiceClient>(service);
        builder.Services.AddSingleton<TaskHubGrpcServer>();
        builder.Services.Configure<TaskHubGrpcServerOptions>(o => o.Mode = dispatches ? TaskHubGrpcServerMode.ApiServerAndDispatcher : TaskHubGrpcServerMode.ApiServerOnly);
        _sidecar = builder.Build();
        _sidecar.MapGrpcService<TaskHubGrpcServer>();
        await _sidecar.StartAsync(cancellationToken);
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_sidecar is not null) await _sidecar.StopAsync(cancellationToken);
    }

    public async ValueTask DisposeAsync()
    {
        if (_sidecar is not null) await _sidecar.DisposeAsync();
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
