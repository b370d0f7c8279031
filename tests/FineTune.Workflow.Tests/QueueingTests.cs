using System.Collections.Concurrent;
using System.Text.Json;
using FineTune.Storage.Checkpoints;
using FineTune.Workflow.Activities;
using FineTune.Workflow.Jobs;
using FineTune.Workflow.Orchestration;
using FineTune.Workflow.Services;
using Microsoft.DurableTask;
using Microsoft.DurableTask.Client;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace FineTune.Workflow.Tests;

/// <summary>
/// Issue 23, item 7, through the real orchestration on Azurite: with one slot, a second run queues (its status says so,
/// with its place), starts training only when the first has ended, and completes; a queued run cancels.
/// </summary>
public sealed class QueueingTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(5);

    private static JobSpec Spec(string jobId, string dataset) => JobSpecReader.Read(JsonSerializer.Serialize(new
    {
        jobId,
        dataset = new { location = dataset, resize = "pad" },
        training = new { epochs = 1, batchSize = 4 },
        seed = 3,
    }, JobSpecReader.Json), localPaths: false);

    [Fact]
    public async Task WithOneSlotASecondRunQueuesThenCompletesAndAQueuedRunCancels()
    {
        await using var host = await WorkflowHost.StartAsync(WorkflowHost.WithTrainChunk<GatedTrainChunk>(),
            services => services.Configure<WorkflowOptions>(o =>
            {
                o.MaxConcurrentRuns = 1;
                o.AdmissionWait = TimeSpan.FromMilliseconds(200);
                o.QueuePollInterval = TimeSpan.FromMilliseconds(200);
            }));
        string dataset = await host.UploadDatasetAsync("tux", 4);
        var client = host.Host.Client;
        var scheduler = new DurableClientScheduler(client);
        var runs = host.Host.Services.GetRequiredService<RunControl>();
        using var timeout = new CancellationTokenSource(Timeout);
        using var gate = GatedTrainChunk.Reset();

        Assert.True((await scheduler.StartAsync(Spec("first", dataset), runs, default)).Started);
        await GatedTrainChunk.FirstEntered.Task.WaitAsync(timeout.Token);
        Assert.True((await scheduler.StartAsync(Spec("second", dataset), runs, default)).Started);
        Assert.True((await scheduler.StartAsync(Spec("third", dataset), runs, default)).Started);

        Assert.Equal(1, (await QueuedAsync(client, "second", timeout.Token)).QueuePosition);
        Assert.Equal(2, (await QueuedAsync(client, "third", timeout.Token)).QueuePosition);
        Assert.Null(await runs.CancelAsync(scheduler, "third", default));
        Assert.Equal(OrchestrationRuntimeStatus.Terminated, (await client.WaitForInstanceCompletionAsync("third", timeout.Token)).RuntimeStatus);

        gate.Set();
        foreach (var id in new[] { "first", "second" })
        {
            var ended = await host.WaitForEndAsync(id, Timeout);
            Assert.True(ended.RuntimeStatus == OrchestrationRuntimeStatus.Completed, $"{id}: {ended.RuntimeStatus} {ended.FailureDetails}");
        }
        Assert.Equal(1, GatedTrainChunk.MostAtOnce);
        Assert.Equal(["first", "second"], GatedTrainChunk.Order.Distinct());
        Assert.Empty(host.Host.Services.GetRequiredService<RunSlots>().Holders);
    }

    private static async Task<RunStatus> QueuedAsync(DurableTaskClient client, string id, CancellationToken cancellationToken)
    {
        while (true)
        {
            var instance = await client.GetInstanceAsync(id, getInputsAndOutputs: true, cancellationToken);
            if (instance?.SerializedCustomStatus is not null && instance.ReadCustomStatusAs<RunStatus>() is { Stage: RunStage.Queued } status) return status;
            Assert.False(instance?.IsCompleted, $"{id} ended without being queued");
            await Task.Delay(100, cancellationToken);
        }
    }
}

/// <summary>Training held at a gate until the test opens it; counts the runs training at once.</summary>
public sealed class GatedTrainChunk(WorkerFiles files, Core.Engine.FineTuneEngine engine, CheckpointStore checkpoints, RunControl runs,
    IOptions<WorkflowOptions> options, WorkerStopping stopping, RunMetrics metrics)
    : TrainChunk(files, engine, checkpoints, runs, options, stopping, metrics)
{
    private static ManualResetEventSlim _gate = new();
    private static int _active;
    public static int MostAtOnce { get; private set; }
    public static ConcurrentQueue<string> Order { get; private set; } = new();
    public static TaskCompletionSource FirstEntered { get; private set; } = new();

    public static ManualResetEventSlim Reset()
    {
        (_gate, _active, MostAtOnce, Order, FirstEntered) = (new ManualResetEventSlim(), 0, 0, new ConcurrentQueue<string>(), new TaskCompletionSource());
        return _gate;
    }

    public override async Task<TrainResult> RunAsync(TaskActivityContext context, TrainRequest request)
    {
        int active = Interlocked.Increment(ref _active);
        MostAtOnce = Math.Max(MostAtOnce, active);
        Order.Enqueue(request.Job.JobId);
        try
        {
            FirstEntered.TrySetResult();
            await Task.Run(() => _gate.Wait(Timeout.InfiniteTimeSpan));
            return await base.RunAsync(context, request);
        }
        finally
        {
            Interlocked.Decrement(ref _active);
        }
    }
}
