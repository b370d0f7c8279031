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
    }, WireJson.Options), localPaths: false);

    [Fact]
    public async Task WithOneSlotASecondRunQueuesThenCompletesAndAQueuedRunCancels()
    {
        // Training held at a gate until the test opens it; counts the runs training at once.
        using var gate = new ManualResetEventSlim();
        int active = 0, mostAtOnce = 0;
        var order = new ConcurrentQueue<string>();
        var firstEntered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var host = await WorkflowHost.StartAsync(WorkflowHost.WithTrainChunk(async (_, request, train) =>
            {
                int now = Interlocked.Increment(ref active);
                InterlockedMax(ref mostAtOnce, now);
                order.Enqueue(request.Job.JobId);
                try
                {
                    firstEntered.TrySetResult();
                    await Task.Run(() => gate.Wait(System.Threading.Timeout.InfiniteTimeSpan));
                    return await train();
                }
                finally
                {
                    Interlocked.Decrement(ref active);
                }
            }),
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

        Assert.True((await scheduler.StartAsync(Spec("first", dataset), runs, default)).Started);
        await firstEntered.Task.WaitAsync(timeout.Token);
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
        Assert.Equal(1, mostAtOnce);
        Assert.Equal(["first", "second"], order.Distinct());
        Assert.Empty(host.Host.Services.GetRequiredService<RunSlots>().Holders);
    }

    private static void InterlockedMax(ref int most, int value)
    {
        for (int seen = Volatile.Read(ref most); value > seen; seen = Volatile.Read(ref most))
            if (Interlocked.CompareExchange(ref most, value, seen) == seen) return;
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
