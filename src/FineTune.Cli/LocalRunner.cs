using FineTune.Core.Weights;
using FineTune.Storage;
using FineTune.Workflow;
using FineTune.Workflow.Jobs;
using FineTune.Workflow.Orchestration;
using FineTune.Workflow.Services;
using Microsoft.DurableTask.Client;
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
        RunAsync((scheduler, runs, token) => scheduler.StartAsync(spec, runs, token), restart: false, id => spec.Model + ", " + (spec.Sweep is { } sweep
            ? $"a {SweepMethods.Choices[sweep.Method].Name} sweep of {SweepPlanner.Plan(spec with { JobId = id }).Count} trials, {sweep.Parallelism} at once"
            : $"{spec.Training.Epochs} epochs"), cancellationToken);

    /// <summary>A failed or cancelled run, again under its id and bound spec, from its last checkpoint.</summary>
    public Task<int> RestartAsync(string jobId, CancellationToken cancellationToken) =>
        RunAsync((scheduler, runs, token) => runs.RestartAsync(scheduler, jobId, token), restart: true, _ => "restarted from its last checkpoint", cancellationToken);

    /// <summary>
    /// Cancels a run another <c>finetune</c> process is running: its chunk stops at the next step with a checkpoint there
    /// (the request is a marker in the artifact store, which that process watches); on a persistent backend the
    /// orchestration is terminated too. <c>finetune restart</c> continues it.
    /// </summary>
    public Task<int> CancelAsync(string jobId, CancellationToken cancellationToken) =>
        WithBackendAsync(runsTasks: false, async (host, scheduler) =>
        {
            var runs = host.Services.GetRequiredService<RunControl>();
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
            else if (await runs.CancelAsync(scheduler, jobId, cancellationToken) is { } refusal)
            {
                error.WriteLine(refusal);
                return ExitCodes.BadInput;
            }
            output.WriteLine($"cancel requested: run {jobId} stops at its next step, checkpointed; 'finetune restart {jobId}' continues it");
            return ExitCodes.Succeeded;
        }, cancellationToken);

    /// <summary>Removes a run's history (a persistent backend's) and artifacts; its published model stays unless <paramref name="includePublished"/>.</summary>
    public Task<int> PurgeAsync(string jobId, bool includePublished, CancellationToken cancellationToken) =>
        WithBackendAsync(runsTasks: false, async (host, scheduler) =>
        {
            var outcome = await host.Services.GetRequiredService<RunControl>().PurgeAsync(scheduler, jobId, includePublished, cancellationToken);
            if (!outcome.Purged)
            {
                error.WriteLine(outcome.Refusal);
                return ExitCodes.BadInput;
            }
            output.WriteLine($"purged run {jobId}: {outcome.ArtifactsDeleted} artifact(s) deleted"
                + (outcome.UploadDeleted is { } upload ? $", its uploaded dataset {upload} too (no other run uses it)" : "")
                + (outcome.KeptPublished ? $"; its published model stays in {new RunLayout(jobId).Published} (--include-published removes it)" : ""));
            return ExitCodes.Succeeded;
        }, cancellationToken);

    private Task<int> RunAsync(Func<IRunScheduler, RunControl, CancellationToken, Task<StartOutcome>> start, bool restart, Func<string, string> describe,
        CancellationToken cancellationToken)
    {
        string? ended = null;
        return WithBackendAsync(runsTasks: true, async (host, scheduler) =>
        {
            StartOutcome outcome;
            try
            {
                outcome = await start(scheduler, host.Services.GetRequiredService<RunControl>(), cancellationToken);
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
            try
            {
                var final = await renderer.FollowAsync(host.Services.GetRequiredService<DurableTaskClient>(), PollInterval, id, cancellationToken);
                ended = id;
                return renderer.Report(final);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                output.WriteLine("stopped; every finished step is checkpointed: run the same command again to resume");
                return ExitCodes.Cancelled;
            }
        },
        // The run ended, however (a cancel terminates it before its orchestration can): what it left here goes, once this
        // process's work has stopped. A run merely stopped here (Ctrl-C) keeps it for the command that resumes it.
        cancellationToken, async host =>
        {
            if (ended is not null) await host.Services.GetRequiredService<RunControl>().ReleaseScratchAsync(ended, CancellationToken.None);
        });
    }

    /// <summary>
    /// Serves the task hub in the storage account until cancelled: runs started anywhere on that hub (by
    /// <c>finetune train</c>/<c>sweep</c> or other workers) have their orchestrations and activities run here too.
    /// </summary>
    public Task<int> ServeAsync(CancellationToken cancellationToken)
    {
        if (storage is null)
        {
            error.WriteLine("storage: a worker needs --storage: workers meet in a task hub of a storage account");
            return Task.FromResult(ExitCodes.BadInput);
        }
        return WithBackendAsync(runsTasks: true, async (_, _) =>
        {
            output.WriteLine($"worker {WorkerIdentity.Current} serving task hub {taskHub}; Ctrl-C to stop");
            try
            {
                await Task.Delay(Timeout.Infinite, cancellationToken);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                // Work items in flight reappear for the other workers once their visibility timeout passes.
                output.WriteLine("worker stopped");
            }
            return ExitCodes.Succeeded;
        }, cancellationToken);
    }

    /// <summary>How often a follower asks for a run's state: what a query costs on the backend.</summary>
    private TimeSpan PollInterval => storage is null
        // The in-memory sidecar in this process answers over loopback well under a millisecond: a finished run is reported at once.
        ? TimeSpan.FromMilliseconds(50)
        // A query reads the storage account's instances table.
        : TimeSpan.FromMilliseconds(300);

    /// <summary>
    /// Every command's way to its durable backend: the storage account checked first (in seconds, not after the SDKs'
    /// retries), then this process's host, whose <see cref="DurableTaskClient"/> talks to the backend (in-memory, or the
    /// task hub through <see cref="AzureStorageSidecar"/>), stopped in order however the command ends.
    /// </summary>
    /// <param name="runsTasks">whether this process runs the hub's orchestrations and activities, or only asks about and controls runs</param>
    /// <param name="afterStop">what goes once this process's work has stopped</param>
    private async Task<int> WithBackendAsync(bool runsTasks, Func<IHost, IRunScheduler, Task<int>> command, CancellationToken cancellationToken,
        Func<IHost, Task>? afterStop = null)
    {
        if (storage is not null && await StorageProbe.UnreachableAsync(storage, cancellationToken) is { } reason)
        {
            error.WriteLine($"storage: {reason}");
            return ExitCodes.StorageUnreachable;
        }
        using var host = await StartHostAsync(runsTasks, cancellationToken);
        try
        {
            return await command(host, new DurableClientScheduler(host.Services.GetRequiredService<DurableTaskClient>()));
        }
        finally
        {
            // The host's stopping token first, so a chunk still training (its run terminated meanwhile, say) stops at its next
            // step with a checkpoint; then the host, whose worker, sidecar and services (the engine's pooled models) go last.
            host.Services.GetRequiredService<IHostApplicationLifetime>().StopApplication();
            await host.StopAsync(CancellationToken.None);
            if (afterStop is not null) await afterStop(host);
        }
    }

    /// <summary>
    /// The host, started. The durable backend's sidecar takes a free loopback port found just before it binds it, so
    /// two processes starting at the same moment can pick the same one: the loser builds its host again.
    /// </summary>
    private async Task<IHost> StartHostAsync(bool runsTasks, CancellationToken cancellationToken)
    {
        for (int attempt = 1; ; attempt++)
        {
            var host = BuildHost(runsTasks);
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

    private IHost BuildHost(bool runsTasks)
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o => o.SingleLine = true).SetMinimumLevel(LogLevel.Warning).AddFineTuneLogFilters();
        AddWorkflow(builder.Services, workDirectory, storage);
        // In memory, a control command's backend is its own, empty: it runs nothing others wait for.
        if (storage is null) DurableSidecar.AddInMemory(builder.Services, registry => registry.AddFineTuneTasks());
        else AzureStorageSidecar.AddAzureStorageDurableTask(builder.Services, storage, taskHub, runsTasks ? registry => registry.AddFineTuneTasks() : null);
        return builder.Build();
    }
}
