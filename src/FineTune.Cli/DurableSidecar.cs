using System.Net;
using System.Net.Sockets;
using DurableTask.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.DurableTask;
using Microsoft.DurableTask.Client;
using Microsoft.DurableTask.Testing.Sidecar;
using Microsoft.DurableTask.Testing.Sidecar.Grpc;
using Microsoft.DurableTask.Worker;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace FineTune.Cli;

/// <summary>
/// A command's durable backend in this process: an orchestration service (in memory, or Azure Storage's provider) behind
/// the Durable Task SDK's gRPC sidecar, so every command talks to it through the same <see cref="DurableTaskClient"/> and
/// worker. The sidecar listens on a loopback port of its own, and neither gRPC's 4 MB cap on a received message nor
/// Kestrel's 30 MB cap on a request's body applies there, as none does on its worker's and client's channels
/// (<see cref="SidecarChannels"/>): the in-process test host's own sidecar keeps the caps, and a sweep's work item brings
/// every stack's result since its last turn (32 trials' epochs of a rung each). What the SDK's worker checks itself stays:
/// one orchestrator action (a continue-as-new's input) of at most ~3.9 MB, which a sweep keeps to a few epochs a trial
/// (<see cref="Workflow.Orchestration.SweepCarried"/>). Its dispatcher renews no activity's lock: <see cref="RenewedActivityLocks"/> does.
/// </summary>
/// <param name="dispatches">whether the sidecar hands the hub's work to a worker of this process; without one it neither
/// starts the provider's partition management nor stops it (stopping a provider never started throws)</param>
internal sealed class DurableSidecar(string address, Func<ILoggerFactory, Task<IOrchestrationService>> createService, bool dispatches,
    ILoggerFactory logging) : IHostedService, IAsyncDisposable
{
    private WebApplication? _sidecar;

    /// <summary>The in-memory backend: runs live as long as this process.</summary>
    public static IServiceCollection AddInMemory(IServiceCollection services, Action<DurableTaskRegistry> tasks) =>
        Add(services, tasks, logging => Task.FromResult<IOrchestrationService>(new InMemoryOrchestrationService(logging)));

    /// <param name="tasks">the orchestrators and activities this process runs; null: none, a client only</param>
    /// <param name="createService">the orchestration service, which is also its client</param>
    public static IServiceCollection Add(IServiceCollection services, Action<DurableTaskRegistry>? tasks, Func<ILoggerFactory, Task<IOrchestrationService>> createService)
    {
        string address = $"http://127.0.0.1:{FreePort()}";
        // Registered before the worker, so the sidecar is up when the worker connects.
        services.AddHostedService(sp => new DurableSidecar(address, createService, dispatches: tasks is not null, sp.GetRequiredService<ILoggerFactory>()));
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
        return SidecarChannels.Uncap(services);
    }

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var service = await createService(logging);
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton(logging);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.Listen(IPAddress.Loopback, new Uri(address).Port, listen => listen.Protocols = HttpProtocols.Http2);
            // gRPC lifts it for streaming calls only; an activity's result comes in a unary one.
            kestrel.Limits.MaxRequestBodySize = null;
        });
        builder.Services.AddGrpc(grpc => grpc.MaxReceiveMessageSize = null);
        builder.Services.AddSingleton<IOrchestrationService>(new RenewedActivityLocks(service, logging.CreateLogger<RenewedActivityLocks>()));
        builder.Services.AddSingleton((IOrchestrationServiceClient)service);
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

    /// <summary>A loopback port free now; two processes may pick the same one, and the one that binds it second starts its host again.</summary>
    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
