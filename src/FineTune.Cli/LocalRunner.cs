using FineTune.Core.Weights;
using FineTune.Storage;
using FineTune.Workflow;
using FineTune.Workflow.Jobs;
using FineTune.Workflow.Orchestration;
using FineTune.Workflow.Services;
using Microsoft.DurableTask.Client;
using Microsoft.DurableTask.Testing;
using Microsoft.DurableTask.Worker.Grpc;
using Microsoft.DurableTask.Worker.Grpc.Internal;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace FineTune.Cli;

/// <summary>
/// Runs a job through the very orchestration and activities the Functions app runs, in this process. Default:
/// the in-memory Durable Task backend and artifacts in a local folder; killing the process loses only the
/// in-memory orchestration, and the same command resumes from the last checkpoint in the artifact store.
/// With a storage connection string: blob artifacts and the persistent Azure Storage backend, whose task hub other
/// processes (<c>finetune worker</c>) can serve too.
/// </summary>
/// <param name="taskHub">the task hub in the storage account (with <paramref name="storage"/> only)</param>
internal sealed class LocalRunner(string workDirectory, string? storage, string taskHub, TextWriter output, TextWriter error)
{
    public string ArtifactRoot => Path.Combine(workDirectory, "artifacts");

    /// <summary>
    /// Verified weights are named by their hash, so every run of this user shares them, as PyTorch's hub cache
    /// does: <c>$XDG_CACHE_HOME/finetune/weights</c> (<c>~/.cache/finetune/weights</c>).
    /// </summary>
    public static string UserWeightsCache => Path.Combine(
        Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg ? xdg : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache"),
        "finetune", "weights");

    /// <summary>The workflow as local commands run it: artifacts under the work folder (or in blob storage), caches beside them.</summary>
    public static void AddWorkflow(IServiceCollection services, string workDirectory, string? storage)
    {
        services.AddFineTuneWorkflow();
        // Workflow__* settings (environment) as the Functions app reads them; the work folder is the command's.
        services.AddOptions<WorkflowOptions>().BindConfiguration(WorkflowOptions.SectionName);
        services.Configure<ArtifactStoreOptions>(o =>
        {
            o.LocalRoot = Path.Combine(workDirectory, "artifacts");
            o.LocalUploadsRoot = Path.Combine(workDirectory, "uploads");
            o.ConnectionString = storage;
        });
        services.Configure<WorkflowOptions>(o => o.WorkDirectory = Path.Combine(workDirectory, "cache"));
        services.Configure<WeightsFetchOptions>(o => o.CacheDirectory = UserWeightsCache);
        // The workers here talk to the Durable Task sidecar in this process (in-memory or over Azure Storage), which sends
        // no health pings: the check that drops a work-item stream silent for 120 s would drop it during every long chunk,
        // and a work item the sidecar writes into a stream just dropped is lost, its run stalled for good.
        services.Configure<GrpcDurableTaskWorkerOptions>(o => o.SetSilentDisconnectTimeout(TimeSpan.Zero));
    }

    public Task<int> RunAsync(JobSpec spec, CancellationToken cancellationToken) =>
        RunAsync((backend, runs, token) => backend.StartAsync(spec, runs, token), restart: false, id => spec.Model + ", " + (spec.Sweep is { } sweep
            ? $"a {SweepMethods.Choices[sweep.Method].Name} sweep of {SweepPlanner.Plan(spec with { JobId = id }).Count} trials, {sweep.Parallelism} at once"
            : $"{spec.Training.Epochs} epochs"), cancellationToken);

    /// <summary>A failed or cancelled run, again under its id and bound spec, from its last checkpoint.</summary>
    public Task<int> RestartAsync(string jobId, CancellationToken cancellationToken) =>
        RunAsync((backend, runs, token) => runs.RestartAsync(backend, jobId, token), restart: true, _ => "restarted from its last checkpoint", cancellationToken);

    /// <summary>
    /// Cancels a run another <c>finetune</c> process is running: its chunk stops at the next step with a checkpoint there
    /// (the request is a marker in the artifact store, which that process watches); on a persistent backend the
    /// orchestration is terminated too. <c>finetune restart</c> continues it.
    /// </summary>
    public async Task<int> CancelAsync(string jobId, CancellationToken cancellationToken)
    {
        if (storage is not null && await StorageProbe.UnreachableAsync(storage, cancellationToken) is { } reason)
        {
            error.WriteLine($"storage: {reason}");
            return ExitCodes.StorageUnreachable;
        }
        await using var services = ControlServices();
        var runs = services.GetRequiredService<RunControl>();
        if (storage is null)
        {
            // The in-memory backend lives in the running process: the marker alone reaches it.
            if (await runs.BoundSpecAsync(jobId, cancellationToken) is null)
            {
                error.WriteLine($"run '{jobId}' does not exist here");
                return ExitCodes.BadInput;
            }
            await runs.RequestCancelAsync(jobId, cancellationToken);
        }
        else
        {
            await using var backend = await AzureStorageBackend.ConnectAsync(storage, taskHub, NullLoggerFactory.Instance);
            if (await runs.CancelAsync(backend, jobId, cancellationToken) is { } refusal)
            {
                error.WriteLine(refusal);
                return ExitCodes.BadInput;
            }
        }
        output.WriteLine($"cancel requested: run {jobId} stops at its next step, checkpointed; 'finetune restart {jobId}' continues it");
        return ExitCodes.Succeeded;
    }

    /// <summary>Removes a run's history (a persistent backend's) and artifacts; its published model stays unless <paramref name="includePublished"/>.</summary>
    public async Task<int> PurgeAsync(string jobId, bool includePublished, CancellationToken cancellationToken)
    {
        if (storage is not null && await StorageProbe.UnreachableAsync(storage, cancellationToken) is { } reason)
        {
            error.WriteLine($"storage: {reason}");
            return ExitCodes.StorageUnreachable;
        }
        await using var services = ControlServices();
        var runs = services.GetRequiredService<RunControl>();
        await using IRunBackend backend = storage is null ? new NoHistoryBackend() : await AzureStorageBackend.ConnectAsync(storage, taskHub, NullLoggerFactory.Instance);
        var outcome = await runs.PurgeAsync(backend, jobId, includePublished, cancellationToken);
        if (!outcome.Purged)
        {
            error.WriteLine(outcome.Refusal);
            return ExitCodes.BadInput;
        }
        output.WriteLine($"purged run {jobId}: {outcome.ArtifactsDeleted} artifact(s) deleted"
            + (outcome.UploadDeleted is { } upload ? $", its uploaded dataset {upload} too (no other run uses it)" : "")
            + (outcome.KeptPublished ? $"; its published model stays in {new RunLayout(jobId).Published} (--include-published removes it)" : ""));
        return ExitCodes.Succeeded;
    }

    /// <summary>The services a one-shot command's <see cref="RunControl"/> takes: this work folder's (or the storage account's) artifacts, uploads and scratch.</summary>
    private ServiceProvider ControlServices()
    {
        var services = new ServiceCollection();
        // AddWorkflow binds the Workflow section: without a host, from the environment (Workflow__...), as the host reads it.
        services.AddSingleton<IConfiguration>(new ConfigurationBuilder().AddEnvironmentVariables().Build());
        AddWorkflow(services, workDirectory, storage);
        return services.BuildServiceProvider();
    }

    private async Task<int> RunAsync(Func<IRunBackend, RunControl, CancellationToken, Task<StartOutcome>> start, bool restart, Func<string, string> describe,
        CancellationToken cancellationToken)
    {
        if (storage is not null && await StorageProbe.UnreachableAsync(storage, cancellationToken) is { } reason)
        {
            error.WriteLine($"storage: {reason}");
            return ExitCodes.StorageUnreachable;
        }
        using var host = await StartHostAsync(cancellationToken);
        IRunBackend? backend = null;
        string? ended = null;
        try
        {
            backend = storage is null
                ? new InMemoryBackend(host.Services.GetRequiredService<DurableTaskClient>())
                : await AzureStorageBackend.StartAsync(storage, taskHub, host.Services, host.Services.GetRequiredService<ILoggerFactory>());
            StartOutcome outcome;
            try
            {
                outcome = await start(backend, host.Services.GetRequiredService<RunControl>(), cancellationToken);
            }
            catch (SpecConflictException e)
            {
                error.WriteLine(e.Message);
                return ExitCodes.BadInput;
            }
            // Estimated past this machine's memory budget (admission control).
            catch (InvalidJobSpecException e)
            {
                foreach (var problem in e.Errors) error.WriteLine($"job spec: {problem.Field}: {problem.Reason}");
                return ExitCodes.BadInput;
            }
            // A start finding its run live follows it; a restart refused says why.
            if (restart && !outcome.Started)
            {
                error.WriteLine(outcome.ExistingStatus);
                return ExitCodes.BadInput;
            }
            string id = outcome.JobId;
            var renderer = new RunRenderer(output, error, storage is null ? ArtifactRoot + "/" : "", startUpSeconds: RunRenderer.ProcessSeconds(),
                host.Services.GetRequiredService<IArtifactStore>());
            output.WriteLine($"run {id}: {describe(id)}, artifacts in {(storage is null ? ArtifactRoot : "the blob store")}");
            var final = await renderer.FollowAsync(backend, id, cancellationToken);
            ended = id;
            return renderer.Report(final);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            output.WriteLine("stopped; every finished step is checkpointed: run the same command again to resume");
            return ExitCodes.Cancelled;
        }
        finally
        {
            await StopAsync(host, backend);
            // The run ended, however (a cancel terminates it before its orchestration can): what it left here goes. A run
            // merely stopped here (Ctrl-C) keeps it for the command that resumes it.
            if (ended is not null) await host.Services.GetRequiredService<RunControl>().ReleaseScratchAsync(ended, CancellationToken.None);
        }
    }

    /// <summary>
    /// Stops this process's work in order: the host's stopping token first, so a chunk still training (its run
    /// terminated meanwhile, say) stops at its next step with a checkpoint; then the backend, which waits for it;
    /// then the host, whose services (the engine's pooled models) that chunk was using until then.
    /// </summary>
    private static async Task StopAsync(IHost host, IRunBackend? backend)
    {
        host.Services.GetRequiredService<IHostApplicationLifetime>().StopApplication();
        if (backend is not null) await backend.DisposeAsync();
        await host.StopAsync(CancellationToken.None);
    }

    /// <summary>
    /// Serves the task hub in the storage account until cancelled: runs started anywhere on that hub (by
    /// <c>finetune train</c>/<c>sweep</c> or other workers) have their orchestrations and activities run here too.
    /// </summary>
    public async Task<int> ServeAsync(CancellationToken cancellationToken)
    {
        if (storage is null)
        {
            error.WriteLine("storage: a worker needs --storage: workers meet in a task hub of a storage account");
            return ExitCodes.BadInput;
        }
        if (await StorageProbe.UnreachableAsync(storage, cancellationToken) is { } reason)
        {
            error.WriteLine($"storage: {reason}");
            return ExitCodes.StorageUnreachable;
        }
        using var host = await StartHostAsync(cancellationToken);
        AzureStorageBackend? backend = null;
        try
        {
            backend = await AzureStorageBackend.StartAsync(storage, taskHub, host.Services, host.Services.GetRequiredService<ILoggerFactory>());
            output.WriteLine($"worker {WorkerIdentity.Current} serving task hub {taskHub}; Ctrl-C to stop");
            await Task.Delay(Timeout.Infinite, cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // Work items in flight reappear for the other workers once their visibility timeout passes.
            output.WriteLine("worker stopped");
        }
        finally
        {
            await StopAsync(host, backend);
        }
        return ExitCodes.Succeeded;
    }

    /// <summary>
    /// The host, started. The in-memory backend's sidecar takes a free loopback port found just before it binds it, so
    /// two processes starting at the same moment can pick the same one: the loser builds its host again.
    /// </summary>
    private async Task<IHost> StartHostAsync(CancellationToken cancellationToken)
    {
        for (int attempt = 1; ; attempt++)
        {
            var host = BuildHost();
            try
            {
                await host.StartAsync(cancellationToken);
                return host;
            }
            catch (IOException e) when (attempt < 5 && e.InnerException is Microsoft.AspNetCore.Connections.AddressInUseException)
            {
                host.Dispose();
            }
            catch
            {
                host.Dispose();
                throw;
            }
        }
    }

    private IHost BuildHost()
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o => o.SingleLine = true).SetMinimumLevel(LogLevel.Warning);
        AddWorkflow(builder.Services, workDirectory, storage);
        if (storage is null) builder.Services.AddInMemoryDurableTask(registry => registry.AddFineTuneTasks());
        return builder.Build();
    }
}
