using FineTune.Core.Weights;
using FineTune.Storage;
using FineTune.Workflow;
using FineTune.Workflow.Jobs;
using FineTune.Workflow.Orchestration;
using FineTune.Workflow.Services;
using Microsoft.DurableTask.Client;
using Microsoft.DurableTask.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

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
        services.Configure<ArtifactStoreOptions>(o =>
        {
            o.LocalRoot = Path.Combine(workDirectory, "artifacts");
            o.ConnectionString = storage;
        });
        services.Configure<WorkflowOptions>(o => o.WorkDirectory = Path.Combine(workDirectory, "cache"));
        services.Configure<WeightsFetchOptions>(o => o.CacheDirectory = UserWeightsCache);
    }

    public async Task<int> RunAsync(JobSpec spec, CancellationToken cancellationToken)
    {
        if (storage is not null && await StorageProbe.UnreachableAsync(storage, cancellationToken) is { } reason)
        {
            error.WriteLine($"storage: {reason}");
            return ExitCodes.StorageUnreachable;
        }
        using var host = BuildHost();
        await host.StartAsync(cancellationToken);
        try
        {
            await using IRunBackend backend = storage is null
                ? new InMemoryBackend(host.Services.GetRequiredService<DurableTaskClient>())
                : await AzureStorageBackend.StartAsync(storage, taskHub, host.Services, host.Services.GetRequiredService<ILoggerFactory>());
            string id = (await backend.StartAsync(spec, cancellationToken)).JobId;
            var renderer = new RunRenderer(output, error, storage is null ? ArtifactRoot + "/" : "", startUpSeconds: RunRenderer.ProcessSeconds());
            string what = spec.Sweep is { } sweep
                ? $"a {SweepMethods.Choices[sweep.Method].Name} sweep of {SweepPlanner.Plan(spec with { JobId = id }).Count} trials, {sweep.Parallelism} at once"
                : $"{spec.Training.Epochs} epochs";
            output.WriteLine($"run {id}: {spec.Model}, {what}, artifacts in {(storage is null ? ArtifactRoot : "the blob store")}");
            return renderer.Report(await renderer.FollowAsync(backend, id, cancellationToken));
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            output.WriteLine("stopped; every finished step is checkpointed: run the same command again to resume");
            return ExitCodes.Cancelled;
        }
        finally
        {
            await host.StopAsync(CancellationToken.None);
        }
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
        using var host = BuildHost();
        await host.StartAsync(cancellationToken);
        try
        {
            await using var backend = await AzureStorageBackend.StartAsync(storage, taskHub, host.Services, host.Services.GetRequiredService<ILoggerFactory>());
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
            await host.StopAsync(CancellationToken.None);
        }
        return ExitCodes.Succeeded;
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
