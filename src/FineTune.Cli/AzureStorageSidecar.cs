using System.Net;
using System.Net.Sockets;
using DurableTask.AzureStorage;
using DurableTask.Core;
using FineTune.Workflow;
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
/// <c>serve --storage</c>'s durable backend: the Azure Storage provider that <c>train --storage</c> runs on (same
/// task hub by default, same settings), put behind the Durable Task SDK's gRPC client and worker by the sidecar the in-process
/// test host uses for its in-memory backend, so the API gets the same <see cref="DurableTaskClient"/> either way.
/// The sidecar listens on a loopback port of its own.
/// </summary>
internal sealed class AzureStorageSidecar(string address, string connectionString, string taskHub, ILoggerFactory logging) : IHostedService, IAsyncDisposable
{
    private WebApplication? _sidecar;

    /// <param name="tasks">the orchestrators and activities this process runs for the task hub; null: none, a client only (the
    /// sidecar dispatches no work until a worker connects, so it takes no partition from the hub's workers)</param>
    public static IServiceCollection AddAzureStorageDurableTask(IServiceCollection services, string connectionString, string taskHub,
        Action<DurableTaskRegistry>? tasks)
    {
        string address = $"http://127.0.0.1:{FreePort()}";
        // Registered before the worker, so the sidecar is up when the worker connects.
        services.AddHostedService(sp => new AzureStorageSidecar(address, connectionString, taskHub, sp.GetRequiredService<ILoggerFactory>()));
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
        var service = new AzureStorageOrchestrationService(AzureStorageBackend.Settings(connectionString, taskHub, logging));
        await service.CreateIfNotExistsAsync();
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton(logging);
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, new Uri(address).Port, listen => listen.Protocols = HttpProtocols.Http2));
        builder.Services.AddGrpc();
        builder.Services.AddSingleton<IOrchestrationService>(service);
        builder.Services.AddSingleton<IOrchestrationServiceClient>(service);
        builder.Services.AddSingleton<TaskHubGrpcServer>();
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
