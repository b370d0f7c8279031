using System.Net.Sockets;
using System.Text.Json;
using FineTune.Core.Training;
using FineTune.Storage;
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
/// Failures made on purpose, on real Azurite with the real orchestration: a damaged newest checkpoint, a cancel
/// mid-chunk, a failed run restarted, a worker dying on the same chunk, a job id reused with another spec. Every
/// run that finishes must publish the very weights of an uninterrupted run.
/// </summary>
public sealed class RunLifecycleTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(5);

    /// <summary>15 training photos, batches of 4: 4 steps an epoch; chunks of 3 steps end inside epochs as well as at their ends.</summary>
    private static JobSpec Spec(string jobId, string dataset, int epochs = 3) => JobSpecReader.Read(JsonSerializer.Serialize(new
    {
        jobId,
        dataset = new { location = dataset, resize = "pad" },
        training = new { epochs, batchSize = 4, maxStepsPerChunk = 3 },
        seed = 11,
    }, WireJson.Options), localPaths: false);

    /// <summary>The published weights of the same spec run without interruption (a job id does not change them).</summary>
    private static readonly Lazy<Task<string>> Uninterrupted = new(async () =>
    {
        await using var host = await WorkflowHost.StartAsync();
        var spec = Spec("uninterrupted", await host.UploadDatasetAsync("tux", 6));
        var status = await RunAsync(host, spec);
        return await SafetensorsShaAsync(host.Store, status.ReadOutputAs<FineTuneResult>()!);
    });

    [Fact]
    public async Task ADamagedNewestCheckpointIsWrittenAgainAndTheRunFinishesWithTheSameWeights()
    {
        string expected = await Uninterrupted.Value;
        // Storage rot: once, the newest checkpoint's weights lose a bit just before the chunk after it starts.
        const long at = 7;
        bool corrupted = false;
        await using var host = await WorkflowHost.StartAsync(WorkflowHost.WithTrainChunk(async (services, request, train) =>
        {
            if (!corrupted && request.FromStep == at)
            {
                corrupted = true;
                var store = services.GetRequiredService<IArtifactStore>();
                await foreach (var item in store.ListAsync($"{new RunLayout(request.Job.JobId).Checkpoints}{at:D12}/", default))
                {
                    if (!item.Name.EndsWith("-" + TrainingSnapshot.ModelPart, StringComparison.Ordinal)) continue;
                    using var buffer = new MemoryStream();
                    await using (var stream = await store.OpenReadAsync(item.Name, default)) await stream.CopyToAsync(buffer);
                    byte[] data = buffer.ToArray();
                    data[^5] ^= 0x01;
                    await store.WriteAsync(item.Name, new MemoryStream(data), WriteMode.Overwrite, default);
                }
            }
            return await train();
        }));
        var spec = Spec("corrupted", await host.UploadDatasetAsync("tux", 6));

        var status = await RunAsync(host, spec);

        Assert.True(corrupted);
        Assert.Equal(expected, await SafetensorsShaAsync(host.Store, status.ReadOutputAs<FineTuneResult>()!));
    }

    /// <summary>
    /// The cancel is requested at step 5 and that step waits until the chunk has seen it (the chunk's stopping token, an
    /// event): the chunk must then stop before step 6, with its checkpoint at 5, and fail as cancelled.
    /// </summary>
    [Fact]
    public async Task ACancelStopsTheChunkAtTheNextStepCheckpointedThereAndARestartEndsWithTheSameWeights()
    {
        string expected = await Uninterrupted.Value;
        const long cancelAt = 5;
        long lastStep = 0;
        bool cancelled = false;
        Exception? failure = null;
        var finished = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        RunControl? runs = null;
        IRunScheduler? scheduler = null;
        await using var host = await WorkflowHost.StartAsync(WorkflowHost.WithTrainChunk(async (_, _, train) =>
            {
                try
                {
                    return await train();
                }
                catch (Exception e) when (cancelled && failure is null)
                {
                    failure = e;
                    finished.TrySetResult();
                    throw;
                }
            }),
            services => services
                .Configure<WorkflowOptions>(o => o.CancelPollInterval = TimeSpan.FromMilliseconds(100))
                .AddSingleton<IStepObserver>(new StepHook((report, stopping) =>
                {
                    lastStep = StepHook.GlobalStep(report);
                    if (cancelled || lastStep != cancelAt) return;
                    cancelled = true;
                    Assert.Null(runs!.CancelAsync(scheduler!, "cancelled", default).GetAwaiter().GetResult());
                    // Bounded only so that a chunk deaf to cancels fails the test instead of hanging it.
                    if (!stopping.WaitHandle.WaitOne(Timeout)) throw new TimeoutException("the chunk never saw the cancel");
                })));
        var spec = Spec("cancelled", await host.UploadDatasetAsync("tux", 6));
        scheduler = new DurableClientScheduler(host.Host.Client);
        runs = host.Host.Services.GetRequiredService<RunControl>();

        Assert.True((await scheduler.StartAsync(spec, runs, default)).Started);
        using var timeout = new CancellationTokenSource(Timeout);
        var final = await host.Host.Client.WaitForInstanceCompletionAsync("cancelled", timeout.Token);
        await finished.Task.WaitAsync(timeout.Token);

        Assert.Equal(OrchestrationRuntimeStatus.Terminated, final.RuntimeStatus);
        Assert.IsType<RunCancelledException>(failure);
        Assert.Equal(cancelAt, lastStep);
        var checkpoints = host.Host.Services.GetRequiredService<CheckpointStore>();
        Assert.Equal(cancelAt, (await checkpoints.LoadLatestAsync("cancelled", default))!.Manifest.Sequence);
        Assert.False(await host.Store.ExistsAsync(new RunLayout("cancelled").ModelCard, default));

        var restarted = await runs.RestartAsync(scheduler, "cancelled", default);
        Assert.True(restarted.Started, restarted.ExistingStatus);
        var done = await host.Host.Client.WaitForInstanceCompletionAsync("cancelled", getInputsAndOutputs: true, timeout.Token);
        Assert.Equal(OrchestrationRuntimeStatus.Completed, done.RuntimeStatus);
        Assert.Equal(expected, await SafetensorsShaAsync(host.Store, done.ReadOutputAs<FineTuneResult>()!));
        Assert.False((await runs.RestartAsync(scheduler, "cancelled", default)).Started);
    }

    /// <summary>
    /// A restart at once after a cancel, before the cancelled chunk has looked for it (every 2 s): the old chunk must still
    /// stop, and before the restarted run trains. Once, the restart forgot the cancel, the old chunk trained on beside the
    /// new run, and the restarted run never ended: the in-process sidecar keys a running activity by instance id and task
    /// id only, so the old call's late answer took the new call's place.
    /// </summary>
    [Fact]
    public async Task ARestartAtOnceAfterACancelWaitsForTheCancelledChunkToStopAndEndsWithTheSameWeights()
    {
        string expected = await Uninterrupted.Value;
        // Once the run reaches step 4, it is cancelled and restarted at once from another thread (as over HTTP), while the
        // chunk then running (the old one) holds each step until it is told to stop; when it ends and when the restarted
        // run's first chunk begins are recorded.
        const long restartAt = 4;
        object? running = null, old = null;
        Exception? oldFailure = null;
        DateTimeOffset? oldEnded = null, newStarted = null;
        var restartedRun = new TaskCompletionSource<StartOutcome>(TaskCreationOptions.RunContinuationsAsynchronously);
        (RunControl Runs, IRunScheduler Scheduler, DurableTaskClient Client)? control = null;
        await using var host = await WorkflowHost.StartAsync(WorkflowHost.WithTrainChunk(async (_, _, train) =>
            {
                var call = new object();
                if (Volatile.Read(ref old) is not null) newStarted ??= DateTimeOffset.UtcNow;
                Volatile.Write(ref running, call);
                try
                {
                    return await train();
                }
                catch (Exception e) when (call == Volatile.Read(ref old))
                {
                    oldFailure = e;
                    throw;
                }
                finally
                {
                    if (call == Volatile.Read(ref old)) oldEnded = DateTimeOffset.UtcNow;
                }
            }),
            services => services.AddSingleton<IStepObserver>(new StepHook((report, stopping) =>
            {
                if (Volatile.Read(ref old) is null && StepHook.GlobalStep(report) == restartAt)
                {
                    Volatile.Write(ref old, Volatile.Read(ref running));
                    var (runs, scheduler, client) = control!.Value;
                    _ = Task.Run(async () =>
                    {
                        try
                        {
                            Assert.Null(await runs.CancelAsync(scheduler, "restarted", default));
                            await client.WaitForInstanceCompletionAsync("restarted");
                            restartedRun.TrySetResult(await runs.RestartAsync(scheduler, "restarted", default));
                        }
                        catch (Exception e)
                        {
                            restartedRun.TrySetException(e);
                        }
                    }, CancellationToken.None);
                }
                // Held, the old chunk cannot finish before the cancel reaches it; bounded so that a forgotten cancel fails the test.
                if (Volatile.Read(ref old) is { } held && held == Volatile.Read(ref running) && !stopping.WaitHandle.WaitOne(Timeout))
                    throw new TimeoutException("the cancelled chunk never saw the cancel");
            })));
        var spec = Spec("restarted", await host.UploadDatasetAsync("tux", 6));
        var scheduler = new DurableClientScheduler(host.Host.Client);
        var runs = host.Host.Services.GetRequiredService<RunControl>();
        control = (runs, scheduler, host.Host.Client);

        Assert.True((await scheduler.StartAsync(spec, runs, default)).Started);
        var restarted = await restartedRun.Task.WaitAsync(Timeout);
        Assert.True(restarted.Started, restarted.ExistingStatus);
        var done = await host.WaitForEndAsync("restarted", TimeSpan.FromMinutes(2));

        Assert.Equal(OrchestrationRuntimeStatus.Completed, done.RuntimeStatus);
        Assert.IsType<RunCancelledException>(oldFailure);
        Assert.True(oldEnded <= newStarted, $"the cancelled chunk ended at {oldEnded:O}, after the restarted run's first chunk began at {newStarted:O}");
        Assert.Equal(expected, await SafetensorsShaAsync(host.Store, done.ReadOutputAs<FineTuneResult>()!));
    }

    [Fact]
    public async Task AFailedRunRestartsToTheSameWeightsAndPurgeKeepsOnlyThePublishedModel()
    {
        string expected = await Uninterrupted.Value;
        // Failing for good once, mid-chunk.
        bool failedOnce = false;
        await using var host = await WorkflowHost.StartAsync(services: services => services.AddSingleton<IStepObserver>(new StepHook(report =>
        {
            if (!failedOnce && StepHook.GlobalStep(report) == 6)
            {
                failedOnce = true;
                throw new DiskOnFireException();
            }
        })));
        var spec = Spec("failed", await host.UploadDatasetAsync("tux", 6));
        var scheduler = new DurableClientScheduler(host.Host.Client);
        var runs = host.Host.Services.GetRequiredService<RunControl>();

        var failed = await RunAsync(host, spec, expectCompleted: false);
        Assert.Equal(OrchestrationRuntimeStatus.Failed, failed.RuntimeStatus);
        Assert.Contains("disk on fire", failed.FailureDetails!.ToString());

        Assert.True((await runs.RestartAsync(scheduler, "failed", default)).Started);
        using var timeout = new CancellationTokenSource(Timeout);
        var done = await host.Host.Client.WaitForInstanceCompletionAsync("failed", getInputsAndOutputs: true, timeout.Token);
        Assert.Equal(OrchestrationRuntimeStatus.Completed, done.RuntimeStatus);
        Assert.Equal(expected, await SafetensorsShaAsync(host.Store, done.ReadOutputAs<FineTuneResult>()!));

        var layout = new RunLayout("failed");
        var purged = await runs.PurgeAsync(scheduler, "failed", includePublished: false, default);
        Assert.True(purged.Purged && purged.KeptPublished);
        Assert.Null(await host.Host.Client.GetInstanceAsync("failed", default));
        var left = await NamesAsync(host.Store, layout.Root);
        Assert.All(left, name => Assert.True(name.StartsWith(layout.Published, StringComparison.Ordinal) || name == layout.Spec, name));
        Assert.Contains(layout.ModelCard, left);
        Assert.Contains(layout.Safetensors, left);
        Assert.Contains(layout.Spec, left);
        // The id stays bound while its published model is there; purging that too frees it.
        await Assert.ThrowsAsync<SpecConflictException>(() => runs.BindSpecAsync("failed", spec with { Seed = 12 }, default));
        Assert.True((await runs.PurgeAsync(scheduler, "failed", includePublished: true, default)).Purged);
        Assert.Empty(await NamesAsync(host.Store, layout.Root));
    }

    /// <summary>
    /// A framework exception outside CoreLib, such as the ENOTCONN of a reset connection, is transient: retried like any
    /// other (the retry policy once gave up on it at once).
    /// </summary>
    [Fact]
    public async Task ASocketFailureMidChunkIsRetriedAndTheRunEndsWithTheSameWeights()
    {
        string expected = await Uninterrupted.Value;
        // The connection is reset once, mid-chunk, as storage calls see during an outage.
        bool failed = false;
        await using var host = await WorkflowHost.StartAsync(services: services => services.AddSingleton<IStepObserver>(new StepHook(report =>
        {
            if (!failed && StepHook.GlobalStep(report) == 5)
            {
                failed = true;
                throw new SocketException((int)SocketError.NotConnected);
            }
        })));
        var spec = Spec("socket", await host.UploadDatasetAsync("tux", 6));

        var status = await RunAsync(host, spec);

        Assert.True(failed);
        Assert.Equal(expected, await SafetensorsShaAsync(host.Store, status.ReadOutputAs<FineTuneResult>()!));
    }

    [Fact]
    public async Task AWorkerDyingOnTheSameChunkFailsTheRunWithTheReasonAfterNStarts()
    {
        // The worker dies every time it reaches the same step, as one killed for memory does.
        int deaths = 0;
        await using var host = await WorkflowHost.StartAsync(services: services => services
            .Configure<WorkflowOptions>(o => o.MaxChunkAttempts = 2)
            .AddSingleton<IStepObserver>(new StepHook(report =>
            {
                if (StepHook.GlobalStep(report) != 5) return;
                deaths++;
                throw new IOException("worker killed");
            })));
        var spec = Spec("dying", await host.UploadDatasetAsync("tux", 6));

        var status = await RunAsync(host, spec, expectCompleted: false);

        Assert.Equal(OrchestrationRuntimeStatus.Failed, status.RuntimeStatus);
        Assert.Contains("the chunk from step 4 was started 2 times without finishing", status.FailureDetails!.ToString());
        Assert.Equal(2, deaths);
    }

    [Fact]
    public async Task AJobIdReusedWithAnotherSpecIsRefusedNamingBothHashes()
    {
        await using var host = await WorkflowHost.StartAsync();
        var first = Spec("reused", await host.UploadDatasetAsync("tux", 6));
        var second = Spec("reused", await host.UploadDatasetAsync("other", 4));
        var runs = host.Host.Services.GetRequiredService<RunControl>();
        await runs.BindSpecAsync("reused", first, default);
        await runs.BindSpecAsync("reused", first, default);

        var refused = await Assert.ThrowsAsync<SpecConflictException>(() => new DurableClientScheduler(host.Host.Client).StartAsync(second, runs, default));
        Assert.Contains(JobSpecReader.Hash(first), refused.Message);
        Assert.Contains(JobSpecReader.Hash(second), refused.Message);

        // Scheduled past the starter, the run's first activity refuses it, without retries.
        var status = await RunAsync(host, second, expectCompleted: false);
        Assert.Equal(OrchestrationRuntimeStatus.Failed, status.RuntimeStatus);
        Assert.Contains($"bound to spec sha256:{JobSpecReader.Hash(first)}", status.FailureDetails!.ToString());
        Assert.Empty(await host.Host.Services.GetRequiredService<CheckpointStore>().ListAsync("reused", default));
    }

    [Fact]
    public async Task StorageUnreachableForAMinuteMidRunDelaysTheRunWhichThenCompletesWithTheSameWeights()
    {
        string expected = await Uninterrupted.Value;
        await using var proxy = new OutageProxy();
        // Once, storage is cut off for a minute when the run reaches step 5.
        DateTimeOffset? began = null;
        await using var host = await WorkflowHost.StartAsync(services: services => services
            .Configure<ArtifactStoreOptions>(o => o.ConnectionString = proxy.ConnectionString)
            .AddSingleton<IStepObserver>(new StepHook(report =>
            {
                if (began is not null || StepHook.GlobalStep(report) != 5) return;
                began = DateTimeOffset.UtcNow;
                proxy.Outage(TimeSpan.FromSeconds(60));
            })));
        var spec = Spec("outage", await host.UploadDatasetAsync("tux", 6));

        var status = await RunAsync(host, spec);

        Assert.NotNull(began);
        Assert.True(status.LastUpdatedAt - began >= TimeSpan.FromSeconds(60), $"the run ended {status.LastUpdatedAt - began} into the outage");
        Assert.Equal(expected, await SafetensorsShaAsync(host.Store, status.ReadOutputAs<FineTuneResult>()!));
    }

    [Fact]
    public async Task RetentionPurgesRunsUntouchedForItsDaysAndKeepsTheirPublishedModels()
    {
        await using var host = await WorkflowHost.StartAsync(services: services => services.Configure<WorkflowOptions>(o => o.RetentionDays = 30));
        var runs = host.Host.Services.GetRequiredService<RunControl>();
        var scheduler = new DurableClientScheduler(host.Host.Client);
        var (old, published) = (new RunLayout("old-run"), new RunLayout("published-run"));
        foreach (var name in new[] { old.DatasetReport, old.AttemptsOf(0), published.DatasetReport, published.ModelCard, published.Spec })
            await host.Store.WriteAsync(name, new MemoryStream("{}"u8.ToArray()), WriteMode.Overwrite, default);

        Assert.Empty(await runs.PurgeExpiredAsync(scheduler, DateTimeOffset.UtcNow.AddDays(29), default));
        var purged = await runs.PurgeExpiredAsync(scheduler, DateTimeOffset.UtcNow.AddDays(31), default);

        Assert.Equal(["old-run", "published-run"], purged.Order(StringComparer.Ordinal));
        Assert.Empty(await NamesAsync(host.Store, old.Root));
        Assert.Equal([published.ModelCard, published.Spec], (await NamesAsync(host.Store, published.Root)).Order(StringComparer.Ordinal));
        Assert.Empty(await runs.PurgeExpiredAsync(scheduler, DateTimeOffset.UtcNow.AddDays(400), default));
    }

    [Fact]
    public async Task FeaturesOverTheShardCapAreStoredInShardsKeptByHashAndTheRunEndsWithTheSameWeights()
    {
        string expected = await Uninterrupted.Value;
        // 512 floats a photo: 16 KiB shards hold 8 photos, so the 15 training photos take two, as 3 GiB would take three 1 GiB shards.
        await using var host = await WorkflowHost.StartAsync(services: services => services.Configure<WorkflowOptions>(o => o.FeatureShardBytes = 16 << 10));
        var spec = Spec("sharded", await host.UploadDatasetAsync("tux", 6));

        var status = await RunAsync(host, spec);

        var shards = await NamesAsync(host.Store, new RunLayout("sharded").Features);
        Assert.Equal(["train-0000", "train-0001", "validation-0000"], shards.Select(n => n.Split('/')[^1].Replace(".safetensors", "")));
        Assert.Equal(expected, await SafetensorsShaAsync(host.Store, status.ReadOutputAs<FineTuneResult>()!));
        // The worker's copies, kept by hash in the run's scratch while it ran, leave with it.
        Assert.False(Directory.Exists(host.Host.Services.GetRequiredService<RunScratch>().Folder("sharded")));
    }


    [Fact]
    public async Task AFeaturePassOverItsShardSizeFansOutToTheSameFeatureBytesAndWeights()
    {
        string expected = await Uninterrupted.Value;
        // The single pass cut into 16 KiB shards (8 photos of 512 floats) stores the shards an 8-image fan-out computes one by one.
        Dictionary<string, byte[]> single;
        await using (var one = await WorkflowHost.StartAsync(services: services => services.Configure<WorkflowOptions>(o => o.FeatureShardBytes = 16 << 10)))
        {
            await RunAsync(one, Spec("one-pass", await one.UploadDatasetAsync("tux", 6)));
            single = await ShardBytesAsync(one.Store, "one-pass");
        }
        await using var host = await WorkflowHost.StartAsync(services: services => services.Configure<WorkflowOptions>(o => o.FeaturePassShardImages = 8));

        var status = await RunAsync(host, Spec("fanned-out", await host.UploadDatasetAsync("tux", 6)));

        // Unsharded by bytes (1 GiB), the 15 training photos would be one shard: two say the pass fanned out.
        var fanned = await ShardBytesAsync(host.Store, "fanned-out");
        Assert.Equal(["train-0000", "train-0001", "validation-0000"], fanned.Keys.Order(StringComparer.Ordinal));
        foreach (var (shard, bytes) in single) Assert.True(bytes.AsSpan().SequenceEqual(fanned[shard]), shard + " differs from the single pass's");
        Assert.Equal(expected, await SafetensorsShaAsync(host.Store, status.ReadOutputAs<FineTuneResult>()!));
    }

    private static async Task<Dictionary<string, byte[]>> ShardBytesAsync(IArtifactStore store, string runId)
    {
        var shards = new Dictionary<string, byte[]>();
        foreach (string name in await NamesAsync(store, new RunLayout(runId).Features))
        {
            await using var stream = await store.OpenReadAsync(name, default);
            using var bytes = new MemoryStream();
            await stream.CopyToAsync(bytes);
            shards[name.Split('/')[^1].Replace(".safetensors", "", StringComparison.Ordinal)] = bytes.ToArray();
        }
        return shards;
    }


    private static async Task<OrchestrationMetadata> RunAsync(WorkflowHost host, JobSpec spec, bool expectCompleted = true)
    {
        var client = host.Host.Client;
        await client.ScheduleNewOrchestrationInstanceAsync(FineTuneOrchestrator.Name, new FineTuneJob(spec.JobId!, spec), new StartOrchestrationOptions(spec.JobId));
        var status = await host.WaitForEndAsync(spec.JobId!, Timeout);
        if (expectCompleted && status.RuntimeStatus != OrchestrationRuntimeStatus.Completed)
            Assert.Fail($"run ended {status.RuntimeStatus}: {status.FailureDetails}");
        return status;
    }

    private static async Task<List<string>> NamesAsync(IArtifactStore store, string prefix)
    {
        var names = new List<string>();
        await foreach (var item in store.ListAsync(prefix, default)) names.Add(item.Name);
        return names;
    }

    private static async Task<string> SafetensorsShaAsync(IArtifactStore store, FineTuneResult result)
    {
        await using var stream = await store.OpenReadAsync(result.Published.ModelCardName, default);
        return JsonDocument.Parse(stream).RootElement.GetProperty("weights").GetProperty("safetensorsSha256").GetString()!;
    }
}

public sealed class DiskOnFireException() : PermanentRunFailureException("disk on fire");
