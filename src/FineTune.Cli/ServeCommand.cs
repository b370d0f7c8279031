using System.CommandLine;
using FineTune.Api;
using FineTune.Workflow;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.DurableTask.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace FineTune.Cli;

/// <summary>
/// <c>finetune serve</c>: the HTTP API and the dashboard on this machine, over the same in-process durable workflow
/// as <c>finetune train</c>. It listens on loopback only: the API has no authentication of its own.
/// </summary>
internal static class ServeCommand
{
    public const int DefaultPort = 5080;

    public static Command Create(TextWriter output, TextWriter error)
    {
        var port = new Option<int>("--port") { Description = "TCP port on 127.0.0.1 (0: any free one).", DefaultValueFactory = _ => DefaultPort };
        var datasetsRoot = new Option<string?>("--datasets-root") { Description = "Local datasets a job spec names must resolve under this folder, links followed (default: anywhere)." };
        var weightsRoot = new Option<string?>("--weights-root") { Description = "Local weight files a job spec names must resolve under this folder, links followed (default: anywhere)." };
        var command = new Command("serve", "Serve the HTTP API and the dashboard on http://127.0.0.1:PORT/.") { port, TrainCommand.Work, TrainCommand.Storage, TrainCommand.TaskHub, datasetsRoot, weightsRoot };
        command.SetAction((result, cancellationToken) =>
            RunAsync(result.GetValue(port), Path.GetFullPath(result.GetValue(TrainCommand.Work)!), result.GetValue(TrainCommand.Storage), result.GetValue(TrainCommand.TaskHub)!,
                (result.GetValue(datasetsRoot), result.GetValue(weightsRoot)), output, error, cancellationToken));
        return command;
    }

    private static async Task<int> RunAsync(int port, string work, string? storage, string taskHub, (string? Datasets, string? Weights) roots,
        TextWriter output, TextWriter error, CancellationToken cancellationToken)
    {
        if (port is < 0 or > 65535)
        {
            error.WriteLine("port: must be from 0 to 65535");
            return ExitCodes.BadInput;
        }
        foreach (var (name, root) in new[] { ("datasets-root", roots.Datasets), ("weights-root", roots.Weights) })
        {
            if (root is not null && !Directory.Exists(root))
            {
                error.WriteLine($"{name}: '{root}' is not a folder");
                return ExitCodes.BadInput;
            }
        }
        if (storage is not null && await StorageProbe.UnreachableAsync(storage, cancellationToken) is { } reason)
        {
            error.WriteLine($"storage: {reason}");
            return ExitCodes.StorageUnreachable;
        }
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = [], ContentRootPath = AppContext.BaseDirectory });
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o => o.SingleLine = true).SetMinimumLevel(LogLevel.Warning)
            .AddFilter("FineTune", LogLevel.Information);
        var api = new ApiOptions();
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.Listen(System.Net.IPAddress.Loopback, port);
            kestrel.Limits.MaxRequestBodySize = api.MaxUploadBytes;
        });
        builder.Services.Configure<FormOptions>(o => o.MultipartBodyLengthLimit = api.MaxUploadBytes);
        LocalRunner.AddWorkflow(builder.Services, work, storage);
        // As `finetune train`: the in-memory backend, or with a storage account the Azure Storage provider (runs survive a restart).
        if (storage is null) builder.Services.AddInMemoryDurableTask(registry => registry.AddFineTuneTasks());
        else AzureStorageSidecar.AddAzureStorageDurableTask(builder.Services, storage, taskHub);
        builder.Services.AddFineTuneApi();
        builder.Services.Configure<ApiOptions>(o =>
        {
            // A user's own machine: job specs may name local folders, as with `finetune train`.
            o.AllowLocalPaths = true;
            o.DatasetsRoot = roots.Datasets is null ? null : Path.GetFullPath(roots.Datasets);
            o.WeightsRoot = roots.Weights is null ? null : Path.GetFullPath(roots.Weights);
            o.ModelCacheDirectory = Path.Combine(work, "cache", "models");
        });
        builder.Services.AddFineTuneOpenApi();
        await using var app = builder.Build();
        app.MapOpenApi("/" + ApiRoutes.OpenApiDocument);
        app.MapFineTuneApi();
        try
        {
            await app.StartAsync(cancellationToken);
        }
        catch (IOException e)
        {
            error.WriteLine($"port: {e.Message}");
            return ExitCodes.BadInput;
        }
        string url = app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.First().TrimEnd('/');
        output.WriteLine($"serving {url}/ (API {url}/{ApiRoutes.Runs}, OpenAPI {url}/{ApiRoutes.OpenApiDocument}); artifacts in {(storage is null ? Path.Combine(work, "artifacts") : "the blob store")}");
        output.Flush();
        try
        {
            await Task.Delay(Timeout.Infinite, cancellationToken);
        }
        catch (OperationCanceledException)
        {
            // Ctrl+C or SIGTERM: stop serving; finished steps are checkpointed.
        }
        await app.StopAsync(CancellationToken.None);
        return ExitCodes.Succeeded;
    }
}
