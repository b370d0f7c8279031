using System.CommandLine;
using FineTune.Api;
using FineTune.Workflow;
using FineTune.Workflow.Services;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using OpenTelemetry.Metrics;
using Scalar.AspNetCore;

namespace FineTune.Cli;

/// <summary>
/// <c>finetune serve</c>: the HTTP API and the dashboard on this machine, over the same in-process durable workflow
/// as <c>finetune train</c>. It listens on loopback only and answers its own pages and its own user only
/// (<see cref="LocalAccess"/>): a per-process token, printed in the dashboard's URL and kept in the work folder.
/// </summary>
internal static class ServeCommand
{
    public const int DefaultPort = 5080;

    public static Command Create(TextWriter output, TextWriter error)
    {
        var port = new Option<int>("--port") { Description = "TCP port on 127.0.0.1 (0: any free one).", DefaultValueFactory = _ => DefaultPort };
        var noAuth = new Option<bool>("--no-auth")
        {
            Description = "Answer without the token: any local program may then use the API (job specs may then name no local paths).",
        };
        var datasetsRoot = new Option<string?>("--datasets-root") { Description = "Local datasets a job spec names must resolve under this folder, links followed (default: anywhere)." };
        var weightsRoot = new Option<string?>("--weights-root") { Description = "Local weight files a job spec names must resolve under this folder, links followed (default: anywhere)." };
        var maxRuns = new Option<int?>("--max-runs")
        {
            Description = "Runs (a sweep's trials each count) working at once; the rest queue, their status says queued (default: this machine's cores, at least 2; runs together also stay within the memory budget).",
        };
        var command = new Command("serve", "Serve the HTTP API and the dashboard on http://127.0.0.1:PORT/.")
            { port, noAuth, TrainCommand.Work, TrainCommand.Storage, TrainCommand.TaskHub, datasetsRoot, weightsRoot, maxRuns };
        command.SetAction((result, cancellationToken) =>
            RunAsync(result.GetValue(port), result.GetValue(noAuth), Path.GetFullPath(result.GetValue(TrainCommand.Work)!), result.GetValue(TrainCommand.Storage), result.GetValue(TrainCommand.TaskHub)!,
                (result.GetValue(datasetsRoot), result.GetValue(weightsRoot)), result.GetValue(maxRuns), output, error, cancellationToken));
        return command;
    }

    private static async Task<int> RunAsync(int port, bool noAuth, string work, string? storage, string taskHub, (string? Datasets, string? Weights) roots,
        int? maxRuns, TextWriter output, TextWriter error, CancellationToken cancellationToken)
    {
        if (port is < 0 or > 65535)
        {
            error.WriteLine("port: must be from 0 to 65535");
            return ExitCodes.BadInput;
        }
        if (maxRuns is < 1)
        {
            error.WriteLine("max-runs: must be at least 1");
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
        string? token = noAuth ? null : LocalAccess.NewToken();
        WebApplication starting;
        for (int attempt = 1; ; attempt++)
        {
            starting = Build();
            try
            {
                await starting.StartAsync(cancellationToken);
                break;
            }
            catch (Exception e)
            {
                await starting.DisposeAsync();
                if (e is not IOException) throw;
                // The durable backend's sidecar binds a loopback port found free just before: another process may take it
                // first. Built again then; only the port asked for being taken (or not allowed) is the caller's to fix.
                bool callersPort = e.InnerException is not Microsoft.AspNetCore.Connections.AddressInUseException || IsTaken(port);
                if (!callersPort && attempt < 5) continue;
                error.WriteLine(callersPort ? $"port: {e.Message}" : $"the durable backend found no free loopback port: {e.Message}");
                return callersPort ? ExitCodes.BadInput : ExitCodes.Failed;
            }
        }
        await using var app = starting;
        string url = LocalAccess.ListeningAddress(app.Services.GetRequiredService<IServer>()).GetLeftPart(UriPartial.Authority);
        string tokenFile = Path.Combine(work, LocalAccess.TokenFileName);
        output.WriteLine($"serving {url}/ (API {url}/{ApiRoutes.Runs}, OpenAPI {url}/{ApiRoutes.OpenApiDocument}, Prometheus metrics {url}/{ApiRoutes.Metrics}); artifacts in {(storage is null ? Path.Combine(work, "artifacts") : "the blob store")}");
        if (token is null)
            error.WriteLine("warning: --no-auth: any program on this machine, and any web page it runs, may start, cancel and purge runs here (job specs may name no local paths)");
        else
        {
            Directory.CreateDirectory(work);
            LocalAccess.WriteTokenFile(tokenFile, token);
            output.WriteLine($"open the dashboard at {url}/?{LocalAccess.TokenParameter}={token} ; API calls send 'Authorization: Bearer TOKEN', the token also in {tokenFile}");
        }
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
        // This process's token opens nothing once it has stopped.
        if (token is not null) File.Delete(tokenFile);
        return ExitCodes.Succeeded;

        WebApplication Build()
        {
            var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = [], ContentRootPath = AppContext.BaseDirectory });
            builder.Logging.ClearProviders();
            builder.Logging.AddSimpleConsole(o => o.SingleLine = true).SetMinimumLevel(LogLevel.Warning)
                .AddFilter("FineTune", LogLevel.Information).AddFineTuneLogFilters();
            var api = new ApiOptions();
            builder.WebHost.ConfigureKestrel(kestrel =>
            {
                kestrel.Listen(System.Net.IPAddress.Loopback, port);
                kestrel.Limits.MaxRequestBodySize = api.MaxUploadBytes;
                kestrel.Limits.MaxRequestHeaderCount = 64;
                kestrel.Limits.MaxRequestHeadersTotalSize = 16 * 1024;
            });
            // The API reads its forms part by part under its own limits (MultipartForm); these bound any other reader.
            builder.Services.Configure<FormOptions>(o =>
            {
                o.MultipartBodyLengthLimit = api.MaxUploadBytes;
                o.ValueLengthLimit = FineTune.Workflow.Jobs.JobSpecReader.MaxBytes;
                o.ValueCountLimit = api.MaxPredictImages + 8;
                o.MultipartHeadersCountLimit = 8;
            });
            LocalRunner.AddWorkflow(builder.Services, work, storage);
            if (maxRuns is not null) builder.Services.Configure<WorkflowOptions>(o => o.MaxConcurrentRuns = maxRuns);
            // As `finetune train`: the in-memory backend, or with a storage account the Azure Storage provider (runs survive a restart).
            if (storage is null) DurableSidecar.AddInMemory(builder.Services, registry => registry.AddFineTuneTasks());
            else AzureStorageSidecar.AddAzureStorageDurableTask(builder.Services, storage, taskHub, registry => registry.AddFineTuneTasks());
            builder.Services.AddFineTuneApi();
            builder.Services.AddOptions<ApiOptions>().Configure<IServer>((o, server) =>
            {
                // The caller holding the token is this machine's user: job specs may name local folders, as with
                // `finetune train`, under the roots when given. Without it, any local program may call: uploads and blob: sources only.
                o.AllowLocalPaths = !noAuth;
                o.DatasetsRoot = roots.Datasets is null ? null : Path.GetFullPath(roots.Datasets);
                o.WeightsRoot = roots.Weights is null ? null : Path.GetFullPath(roots.Weights);
                o.ModelCacheDirectory = Path.Combine(work, "cache", "models");
                // Read at the first request, once the port is bound (--port 0 picks it then).
                o.BaseUrl = LocalAccess.ListeningAddress(server).GetLeftPart(UriPartial.Authority);
            });
            builder.Services.AddFineTuneOpenApi();
            builder.Services.AddOpenTelemetry().WithMetrics(metrics => metrics.AddMeter(WorkflowMetrics.MeterName).AddPrometheusExporter());
            var built = builder.Build();
            built.UseLocalAccess(token);
            built.MapOpenApi("/" + ApiRoutes.OpenApiDocument);
            built.MapScalarApiReference("/" + ApiRoutes.Docs, o => o.WithTitle("FineTune API").WithOpenApiRoutePattern("/" + ApiRoutes.OpenApiDocument));
            built.MapFineTuneApi();
            // After UseLocalAccess: a scraper sends the token as any API client does (bearer_token_file in prometheus.yml).
            built.MapPrometheusScrapingEndpoint("/" + ApiRoutes.Metrics);
            return built;
        }
    }

    /// <summary>Whether <paramref name="port"/> (0: any) is bound on loopback by another socket.</summary>
    private static bool IsTaken(int port)
    {
        if (port == 0) return false;
        try
        {
            var probe = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, port);
            probe.Start();
            probe.Stop();
            return false;
        }
        catch (System.Net.Sockets.SocketException)
        {
            return true;
        }
    }
}
