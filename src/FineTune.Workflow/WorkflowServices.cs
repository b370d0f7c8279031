using System.Reflection;
using Azure.Identity;
using Azure.Storage.Blobs;
using FineTune.Core.Engine;
using FineTune.Core.Weights;
using FineTune.Storage;
using FineTune.Storage.Checkpoints;
using FineTune.Workflow.Activities;
using FineTune.Workflow.Jobs;
using FineTune.Workflow.Orchestration;
using FineTune.Workflow.Services;
using Microsoft.DurableTask;
using Microsoft.Extensions.Azure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace FineTune.Workflow;

/// <summary>Registration of the workflow's services and durable tasks, shared by the Functions app, the command line and the tests.</summary>
public static class WorkflowServices
{
    /// <summary>
    /// What the workflow's hosts log: the Azure SDK logs every response that is not a success as a warning, and the
    /// workflow's existence checks (a checkpoint, a cancel request, a trial's metrics before its first epoch) are 404s by
    /// design, hundreds a minute in a sweep. So its <c>Azure.Core</c> category is silenced (it logs nothing above a
    /// warning): responses retried into a success and slow responses go unlogged with the 404s; a failure that retrying
    /// does not mend reaches the caller as an exception.
    /// </summary>
    public static ILoggingBuilder AddFineTuneLogFilters(this ILoggingBuilder logging) => logging.AddFilter("Azure.Core", LogLevel.Error);

    /// <summary>The services the activities take by constructor injection. Options come from the caller's configuration.</summary>
    public static IServiceCollection AddFineTuneWorkflow(this IServiceCollection services)
    {
        services.AddOptions<WorkflowOptions>();
        // A relative weights cache lives under the work directory.
        services.AddOptions<WeightsFetchOptions>().PostConfigure<IOptions<WorkflowOptions>>((options, workflow) =>
        {
            if (!Path.IsPathRooted(options.CacheDirectory))
                options.CacheDirectory = Path.Combine(workflow.Value.WorkDirectory, options.CacheDirectory);
        });
        services.AddOptions<ArtifactStoreOptions>();
        // The Azure SDK's clients come from its DI integration: one credential (managed identity on Azure),
        // the SDK's logging and retry options, and configuration binding.
        services.AddAzureClients(clients =>
        {
            clients.UseCredential(new DefaultAzureCredential());
            clients.AddClient<BlobServiceClient, BlobClientOptions>((clientOptions, credential, sp) =>
                    sp.GetRequiredService<IOptions<ArtifactStoreOptions>>().Value.CreateServiceClient(credential, clientOptions))
                .WithName(ArtifactStoreOptions.SectionName);
        });
        services.AddSingleton(sp =>
        {
            var options = sp.GetRequiredService<IOptions<ArtifactStoreOptions>>().Value;
            return options.Create(options.UsesBlobStorage
                ? sp.GetRequiredService<IAzureClientFactory<BlobServiceClient>>().CreateClient(ArtifactStoreOptions.SectionName)
                : null);
        });
        services.AddSingleton(sp =>
        {
            var options = sp.GetRequiredService<IOptions<ArtifactStoreOptions>>().Value;
            return new UserUploads(options.CreateUploads(options.UsesBlobStorage
                ? sp.GetRequiredService<IAzureClientFactory<BlobServiceClient>>().CreateClient(ArtifactStoreOptions.SectionName)
                : null));
        });
        services.AddSingleton<CheckpointStore>();
        // Where local paths may lead: anywhere unless the host confines them (finetune serve's roots).
        services.TryAddSingleton(LocalPathPolicy.Unconfined);
        services.AddSingleton<RunScratch>();
        services.AddSingleton<WorkerFiles>();
        services.AddSingleton(sp => new WorkerStopping(sp.GetService<Microsoft.Extensions.Hosting.IHostApplicationLifetime>()));
        services.AddSingleton<RunCatalog>();
        services.AddSingleton<RunMetrics>();
        services.AddSingleton<RunControl>();
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton<RunSlots>();
        services.AddSingleton<FineTuneEngine>();
        services.TryAddSingleton<IStepObserver, NoStepObserver>();
        // A typed client: each activity gets a fetcher on the factory's pooled handlers, which are recycled so DNS
        // changes are seen. The fetcher follows redirects itself, checking every hop against the allow-list.
        services.AddHttpClient(nameof(WeightsFetcher))
            .ConfigurePrimaryHttpMessageHandler(() => new SocketsHttpHandler { AllowAutoRedirect = false })
            .AddTypedClient((http, sp) => new WeightsFetcher(http,
                sp.GetRequiredService<IOptions<WeightsFetchOptions>>().Value, sp.GetRequiredService<UserUploads>().Store.OpenReadAsync));
        return services;
    }

    /// <summary>One activity per step of the recipe, in order, then the sweep's report, scratch release and admission, each under its durable name (<see cref="ActivityNames"/>).</summary>
    public static readonly IReadOnlyList<(string Name, Type Type)> Activities =
        [.. new[] { typeof(FetchPretrainedWeights), typeof(PrepareModel), typeof(TrainChunk), typeof(Evaluate), typeof(Publish), typeof(WriteSweepReport), typeof(ReleaseRunFiles), typeof(AdmitRun), typeof(LeaveRun), typeof(TrainStackedTrials), typeof(SaveTrialCheckpoint), typeof(ComputeFeatureShard) }
            .Select(type => (type.GetCustomAttribute<DurableTaskAttribute>()!.Name.Name, type))];

    /// <summary>A run, a sweep and a sweep's trial, each under its durable name.</summary>
    public static readonly IReadOnlyList<(string Name, Type Type)> Orchestrators =
        [.. new[] { typeof(FineTuneOrchestrator), typeof(SweepOrchestrator), typeof(TrialOrchestrator) }
            .Select(type => (type.GetCustomAttribute<DurableTaskAttribute>()!.Name.Name, type))];

    /// <summary>The orchestrators and the activities.</summary>
    public static DurableTaskRegistry AddFineTuneTasks(this DurableTaskRegistry registry)
    {
        foreach (var (name, type) in Orchestrators) registry.AddOrchestrator(name, type);
        foreach (var (name, type) in Activities) registry.AddActivity(name, type);
        return registry;
    }
}
