using Azure.Storage.Blobs;
using FineTune.Core.Weights;
using FineTune.Storage;
using FineTune.Workflow;
using FineTune.Workflow.Activities;
using FineTune.Workflow.Orchestration;
using FineTune.Workflow.Services;
using Microsoft.AspNetCore.Connections;
using Microsoft.DurableTask;
using Microsoft.DurableTask.Client;
using Microsoft.DurableTask.Testing;
using Microsoft.DurableTask.Worker.Grpc;
using Microsoft.DurableTask.Worker.Grpc.Internal;
using Microsoft.Extensions.DependencyInjection;

namespace FineTune.Testing;

/// <summary>A test's code around one call of the real training chunk: <paramref name="train"/> runs the chunk.</summary>
public delegate Task<TrainResult> AroundTrainChunk(IServiceProvider services, TrainRequest request, Func<Task<TrainResult>> train);

/// <summary>
/// The real orchestrator and activities in the Durable Task in-process test host, with artifacts in a fresh
/// container of the real Azurite that .ci/run starts, and real photos uploaded as the dataset.
/// </summary>
public sealed class WorkflowHost : IAsyncDisposable
{
    public static readonly string[] Categories = ["animals", "food", "plants"];

    private WorkflowHost(DurableTaskTestHost host, BlobContainerClient container, string work, HostLog log)
    {
        Host = host;
        Container = container;
        WorkDirectory = work;
        Log = log;
    }

    public DurableTaskTestHost Host { get; }
    public BlobContainerClient Container { get; }
    public string WorkDirectory { get; }
    /// <summary>Warnings and failed activities: why a run stalls or fails.</summary>
    public HostLog Log { get; }
    /// <summary>The app's artifacts: weights by hash, runs.</summary>
    public IArtifactStore Store => Host.Services.GetRequiredService<IArtifactStore>();

    /// <summary>What users upload (datasets, their own weights), in its own container.</summary>
    public IArtifactStore Uploads => Host.Services.GetRequiredService<UserUploads>().Store;

    /// <param name="services">changes to the workflow's services (options) after the defaults</param>
    public static async Task<WorkflowHost> StartAsync(Action<DurableTaskRegistry>? tasks = null, Action<IServiceCollection>? services = null)
    {
        Azurite.RequireRunning();
        var container = new BlobContainerClient(Azurite.ConnectionString, "wf-" + Guid.NewGuid().ToString("N"));
        string work = Directory.CreateTempSubdirectory("workflow-").FullName;
        var log = new HostLog();
        var options = new DurableTaskTestHostOptions
        {
            LoggerFactory = log.Factory(),
            ConfigureServices = collection =>
            {
                collection.AddFineTuneWorkflow();
                collection.Configure<ArtifactStoreOptions>(o =>
                {
                    o.ConnectionString = Azurite.ConnectionString;
                    o.ContainerName = container.Name;
                    o.UploadsContainerName = container.Name + "-uploads";
                });
                collection.Configure<WorkflowOptions>(o => o.WorkDirectory = work);
                collection.Configure<WeightsFetchOptions>(o => o.CacheDirectory = Path.Combine(work, "weights-cache"));
                // The in-process sidecar sends no health pings, so the worker's check for a work-item stream silent for
                // 120 s drops a healthy stream during any long activity or retry timer; a work item the sidecar writes
                // into a stream just dropped is lost, and its orchestration waits for it for good.
                collection.Configure<GrpcDurableTaskWorkerOptions>(o => o.SetSilentDisconnectTimeout(TimeSpan.Zero));
                services?.Invoke(collection);
            },
        };
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                return new WorkflowHost(await DurableTaskTestHost.StartAsync(tasks ?? (registry => registry.AddFineTuneTasks()), options), container, work, log);
            }
            catch (IOException e) when (attempt < 5 && e.InnerException is AddressInUseException)
            {
                // The test host picks its sidecar's port at random (30000-39999) without asking whether it is free: the
                // OS hands out ports from 32768 up to every process (an OutageProxy got 32797). Kestrel then fails to bind
                // and throws here; it never shares the port, so this host cannot reach another process's backend.
            }
        }
    }

    /// <summary>
    /// Every task of the workflow (<see cref="WorkflowServices"/>), with a test's code <paramref name="around"/> each call
    /// of the real training chunk (faults between calls, gates, recording failures), the rest as the app has it. Faults
    /// within a chunk go through an <see cref="IStepObserver"/> in the host's services (<see cref="StepHook"/>).
    /// </summary>
    public static Action<DurableTaskRegistry> WithTrainChunk(AroundTrainChunk around) => registry =>
    {
        foreach (var (name, type) in WorkflowServices.Orchestrators) registry.AddOrchestrator(name, type);
        foreach (var (name, type) in WorkflowServices.Activities)
        {
            if (name == ActivityNames.TrainChunk) registry.AddActivity(name, sp => new WrappedTrainChunk(ActivatorUtilities.CreateInstance<TrainChunk>(sp), sp, around));
            else registry.AddActivity(name, type);
        }
    };

    private sealed class WrappedTrainChunk(TrainChunk chunk, IServiceProvider services, AroundTrainChunk around) : TaskActivity<TrainRequest, TrainResult>
    {
        public override Task<TrainResult> RunAsync(TaskActivityContext context, TrainRequest request) =>
            around(services, request, () => chunk.RunAsync(context, request));
    }

    /// <summary>
    /// The instance once it has ended, with its input and output; after <paramref name="timeout"/>, a failure saying where
    /// it stands and what the host logged (an activity failing again and again shows there, not in the status).
    /// </summary>
    public async Task<OrchestrationMetadata> WaitForEndAsync(string instanceId, TimeSpan timeout)
    {
        using var cancel = new CancellationTokenSource(timeout);
        try
        {
            return await Host.Client.WaitForInstanceCompletionAsync(instanceId, getInputsAndOutputs: true, cancel.Token);
        }
        catch (OperationCanceledException) when (cancel.IsCancellationRequested)
        {
            var status = await Host.Client.GetInstanceAsync(instanceId, getInputsAndOutputs: false);
            throw new TimeoutException($"'{instanceId}' has not ended after {timeout}: {status?.RuntimeStatus} (custom status: {status?.SerializedCustomStatus ?? "none"}); the host logged:"
                + Environment.NewLine + Log);
        }
    }

    /// <summary>Uploads <paramref name="perClass"/> tuxpaint photos of each category under <c>datasets/{name}/{class}/</c>.</summary>
    public async Task<string> UploadDatasetAsync(string name, int perClass, IEnumerable<string>? categories = null)
    {
        foreach (var category in categories ?? Categories)
        {
            var root = Path.Combine(TuxPaintStamps.Root, category);
            foreach (var image in TuxPaintStamps.Images(category, perClass))
            {
                await using var file = File.OpenRead(image);
                string blob = $"datasets/{name}/{category}/{Path.GetRelativePath(root, image).Replace('/', '_')}";
                await Uploads.WriteAsync(blob, file, WriteMode.Overwrite, default);
            }
        }
        return $"blob:datasets/{name}/";
    }

    public async ValueTask DisposeAsync()
    {
        await Host.DisposeAsync();
        await Container.DeleteIfExistsAsync();
        await new BlobContainerClient(Azurite.ConnectionString, Container.Name + "-uploads").DeleteIfExistsAsync();
        Directory.Delete(WorkDirectory, recursive: true);
    }
}
