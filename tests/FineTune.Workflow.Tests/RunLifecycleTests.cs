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
    }, JobSpecReader.Json), localPaths: false);

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
        await using var host = await WorkflowHost.StartAsync(WorkflowHost.WithTrainChunk<CorruptingTrainChunk>());
        var spec = Spec("corrupted", await host.UploadDatasetAsync("tux", 6));
        CorruptingTrainChunk.Reset(atFromStep: 7);

        var status = await RunAsync(host, spec);

        Assert.True(CorruptingTrainChunk.Corrupted);
        Assert.Equal(expected, await SafetensorsShaAsync(host.Store, status.ReadOutputAs<FineTuneResult>()!));
    }

    [Fact]
    public async Task ACancelStopsTheChunkWithinAStepCheckpointedThereAndARestartEndsWithTheSameWeights()
    {
        string expected = await Uninterrupted.Value;
        await using var host = await WorkflowHost.StartAsync(WorkflowHost.WithTrainChunk<SlowTrainChunk>(),
            services => services.Configure<WorkflowOptions>(o => o.CancelPollInterval = TimeSpan.FromMilliseconds(100)));
        var spec = Spec("cancelled", await host.UploadDatasetAsync("tux", 6));
        var scheduler = new DurableClientScheduler(host.Host.Client);
        var runs = host.Host.Services.GetRequiredService<RunControl>();
        SlowTrainChunk.Reset(cancelAtGlobalStep: 5, runs, scheduler);

        Assert.True((await scheduler.StartAsync(spec, runs, default)).Started);
        using var timeout = new CancellationTokenSource(Timeout);
        var final = await host.Host.Client.WaitForInstanceCompletionAsync("cancelled", timeout.Token);
        await SlowTrainChunk.Finished.Task.WaitAsync(timeout.Token);

        Assert.Equal(OrchestrationRuntimeStatus.Terminated, final.RuntimeStatus);
        // Polled every 100 ms, 300 ms a step: the chunk sees the request within a step of it (two on a machine this busy).
        Assert.InRange(SlowTrainChunk.LastStep, 5, 7);
        var checkpoints = host.Host.Services.GetRequiredService<CheckpointStore>();
        Assert.Equal(SlowTrainChunk.LastStep, (await checkpoints.LoadLatestAsync("cancelled", default))!.Manifest.Sequence);
        Assert.IsType<RunCancelledException>(SlowTrainChunk.Failure);
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
        await using var host = await WorkflowHost.StartAsync(WorkflowHost.WithTrainChunk<RestartingTrainChunk>());
        var spec = Spec("restarted", await host.UploadDatasetAsync("tux", 6));
        var scheduler = new DurableClientScheduler(host.Host.Client);
        var runs = host.Host.Services.GetRequiredService<RunControl>();
        RestartingTrainChunk.Reset(restartAtGlobalStep: 4, runs, scheduler, host.Host.Client);

        Assert.True((await scheduler.StartAsync(spec, runs, default)).Started);
        var restarted = await RestartingTrainChunk.Restarted.Task.WaitAsync(Timeout);
        Assert.True(restarted.Started, restarted.ExistingStatus);
        var done = await host.WaitForEndAsync("restarted", TimeSpan.FromMinutes(2));

        Assert.Equal(OrchestrationRuntimeStatus.Completed, done.RuntimeStatus);
        Assert.IsType<RunCancelledException>(RestartingTrainChunk.OldFailure);
        Assert.True(RestartingTrainChunk.OldEnded <= RestartingTrainChunk.NewStarted,
            $"the cancelled chunk ended at {RestartingTrainChunk.OldEnded:O}, after the restarted run's first chunk began at {RestartingTrainChunk.NewStarted:O}");
        Assert.Equal(expected, await SafetensorsShaAsync(host.Store, done.ReadOutputAs<FineTuneResult>()!));
    }

    [Fact]
    public async Task AFailedRunRestartsToTheSameWeightsAndPurgeKeepsOnlyThePublishedModel()
    {
        string expected = await Uninterrupted.Value;
        await using var host = await WorkflowHost.StartAsync(WorkflowHost.WithTrainChunk<FailingOnceTrainChunk>());
        var spec = Spec("failed", await host.UploadDatasetAsync("tux", 6));
        var scheduler = new DurableClientScheduler(host.Host.Client);
        var runs = host.Host.Services.GetRequiredService<RunControl>();
        FailingOnceTrainChunk.Reset(failAtGlobalStep: 6);

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
        await using var host = await WorkflowHost.StartAsync(WorkflowHost.WithTrainChunk<SocketFailingOnceTrainChunk>());
        var spec = Spec("socket", await host.UploadDatasetAsync("tux", 6));
        SocketFailingOnceTrainChunk.Reset(failAtGlobalStep: 5);

        var status = await RunAsync(host, spec);

        Assert.True(SocketFailingOnceTrainChunk.Failed);
        Assert.Equal(expected, await SafetensorsShaAsync(host.Store, status.ReadOutputAs<FineTuneResult>()!));
    }

    [Fact]
    public async Task AWorkerDyingOnTheSameChunkFailsTheRunWithTheReasonAfterNStarts()
    {
        await using var host = await WorkflowHost.StartAsync(WorkflowHost.WithTrainChunk<DyingTrainChunk>(),
            services => services.Configure<WorkflowOptions>(o => o.MaxChunkAttempts = 2));
        var spec = Spec("dying", await host.UploadDatasetAsync("tux", 6));

        var status = await RunAsync(host, spec, expectCompleted: false);

        Assert.Equal(OrchestrationRuntimeStatus.Failed, status.RuntimeStatus);
        Assert.Contains("the chunk from step 4 was started 2 times without finishing", status.FailureDetails!.ToString());
        Assert.Equal(2, DyingTrainChunk.Deaths);
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
        await using var host = await WorkflowHost.StartAsync(WorkflowHost.WithTrainChunk<OutageTrainChunk>(),
            services => services.Configure<ArtifactStoreOptions>(o => o.ConnectionString = proxy.ConnectionString));
        var spec = Spec("outage", await host.UploadDatasetAsync("tux", 6));
        OutageTrainChunk.Reset(proxy, atGlobalStep: 5, TimeSpan.FromSeconds(60));

        var status = await RunAsync(host, spec);

        Assert.NotNull(OutageTrainChunk.Began);
        Assert.True(status.LastUpdatedAt - OutageTrainChunk.Began >= TimeSpan.FromSeconds(60), $"the run ended {status.LastUpdatedAt - OutageTrainChunk.Began} into the outage");
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
    public async Task AChunkThatDoesNotAdvanceFailsTheRunInsteadOfRepeatingIt()
    {
        await using var host = await WorkflowHost.StartAsync(WorkflowHost.WithTrainChunk<StuckTrainChunk>());
        var spec = Spec("stuck", await host.UploadDatasetAsync("tux", 6));

        var status = await RunAsync(host, spec, expectCompleted: false);

        Assert.Equal(OrchestrationRuntimeStatus.Failed, status.RuntimeStatus);
        Assert.Contains("the chunk from step 3 returned step 3; training does not advance", status.FailureDetails!.ToString());
        Assert.Equal(1, StuckTrainChunk.Calls);
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

/// <summary>The real TrainChunk, with storage rot: once, the newest checkpoint's weights lose a bit just before the chunk after it starts.</summary>
public sealed class CorruptingTrainChunk(WorkerFiles files, Core.Engine.FineTuneEngine engine, CheckpointStore checkpoints, RunControl runs,
    IOptions<WorkflowOptions> options, WorkerStopping stopping, RunMetrics metrics, IArtifactStore store)
    : TrainChunk(files, engine, checkpoints, runs, options, stopping, metrics)
{
    private static long _at;
    public static bool Corrupted { get; private set; }

    public static void Reset(long atFromStep)
    {
        _at = atFromStep;
        Corrupted = false;
    }

    public override async Task<TrainResult> RunAsync(TaskActivityContext context, TrainRequest request)
    {
        if (!Corrupted && request.FromStep == _at)
        {
            Corrupted = true;
            string folder = $"{new RunLayout(request.Job.JobId).Checkpoints}{_at:D12}/";
            await foreach (var item in store.ListAsync(folder, default))
            {
                if (!item.Name.EndsWith("-" + TrainingSnapshot.ModelPart, StringComparison.Ordinal)) continue;
                using var buffer = new MemoryStream();
                await using (var stream = await store.OpenReadAsync(item.Name, default)) await stream.CopyToAsync(buffer);
                byte[] data = buffer.ToArray();
                data[^5] ^= 0x01;
                await store.WriteAsync(item.Name, new MemoryStream(data), WriteMode.Overwrite, default);
            }
        }
        return await base.RunAsync(context, request);
    }
}

/// <summary>The real TrainChunk at 300 ms a step, whose run is cancelled (through <see cref="RunControl"/>) once it reaches a step.</summary>
public sealed class SlowTrainChunk(WorkerFiles files, Core.Engine.FineTuneEngine engine, CheckpointStore checkpoints, RunControl runs,
    IOptions<WorkflowOptions> options, WorkerStopping stopping, RunMetrics metrics)
    : TrainChunk(files, engine, checkpoints, runs, options, stopping, metrics)
{
    private static long _cancelAt;
    private static RunControl? _runs;
    private static IRunScheduler? _scheduler;
    private static bool _cancelled;
    public static long LastStep { get; private set; }
    public static Exception? Failure { get; private set; }
    public static TaskCompletionSource Finished { get; private set; } = new();

    public static void Reset(long cancelAtGlobalStep, RunControl runs, IRunScheduler scheduler)
    {
        (_cancelAt, _runs, _scheduler, _cancelled, LastStep, Failure) = (cancelAtGlobalStep, runs, scheduler, false, 0, null);
        Finished = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    public override async Task<TrainResult> RunAsync(TaskActivityContext context, TrainRequest request)
    {
        try
        {
            return await base.RunAsync(context, request);
        }
        catch (Exception e) when (_cancelled && Failure is null)
        {
            Failure = e;
            Finished.TrySetResult();
            throw;
        }
    }

    protected override void OnStep(StepReport report)
    {
        LastStep = (long)report.Epoch * report.StepsPerEpoch + report.Step;
        if (!_cancelled && LastStep == _cancelAt)
        {
            _cancelled = true;
            Assert.Null(_runs!.CancelAsync(_scheduler!, "cancelled", default).GetAwaiter().GetResult());
        }
        Thread.Sleep(300);
    }
}

/// <summary>
/// The real TrainChunk whose run, once it reaches a step, is cancelled and restarted at once from another thread (as
/// over HTTP), while this chunk goes on at 3 s a step; records when it ends and when the restarted run's first chunk begins.
/// </summary>
public sealed class RestartingTrainChunk(WorkerFiles files, Core.Engine.FineTuneEngine engine, CheckpointStore checkpoints, RunControl runs,
    IOptions<WorkflowOptions> options, WorkerStopping stopping, RunMetrics metrics)
    : TrainChunk(files, engine, checkpoints, runs, options, stopping, metrics)
{
    private static long _restartAt;
    private static RunControl? _runs;
    private static IRunScheduler? _scheduler;
    private static DurableTaskClient? _client;
    private static int _triggered;
    private bool _old;
    public static Exception? OldFailure { get; private set; }
    public static DateTimeOffset? OldEnded { get; private set; }
    public static DateTimeOffset? NewStarted { get; private set; }
    public static TaskCompletionSource<StartOutcome> Restarted { get; private set; } = new();

    public static void Reset(long restartAtGlobalStep, RunControl runs, IRunScheduler scheduler, DurableTaskClient client)
    {
        (_restartAt, _runs, _scheduler, _client, _triggered, OldFailure, OldEnded, NewStarted) = (restartAtGlobalStep, runs, scheduler, client, 0, null, null, null);
        Restarted = new TaskCompletionSource<StartOutcome>(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    public override async Task<TrainResult> RunAsync(TaskActivityContext context, TrainRequest request)
    {
        if (Volatile.Read(ref _triggered) == 1) NewStarted ??= DateTimeOffset.UtcNow;
        try
        {
            return await base.RunAsync(context, request);
        }
        catch (Exception e) when (_old)
        {
            OldFailure = e;
            throw;
        }
        finally
        {
            if (_old) OldEnded = DateTimeOffset.UtcNow;
        }
    }

    protected override void OnStep(StepReport report)
    {
        if (!_old && (long)report.Epoch * report.StepsPerEpoch + report.Step == _restartAt && Interlocked.Exchange(ref _triggered, 1) == 0)
        {
            _old = true;
            _ = Task.Run(async () =>
            {
                try
                {
                    Assert.Null(await _runs!.CancelAsync(_scheduler!, "restarted", default));
                    await _client!.WaitForInstanceCompletionAsync("restarted");
                    Restarted.TrySetResult(await _runs.RestartAsync(_scheduler!, "restarted", default));
                }
                catch (Exception e)
                {
                    Restarted.TrySetException(e);
                }
            });
        }
        if (_old) Thread.Sleep(3000);
    }
}

/// <summary>The real TrainChunk failing for good once, mid-chunk.</summary>
public sealed class FailingOnceTrainChunk(WorkerFiles files, Core.Engine.FineTuneEngine engine, CheckpointStore checkpoints, RunControl runs,
    IOptions<WorkflowOptions> options, WorkerStopping stopping, RunMetrics metrics)
    : TrainChunk(files, engine, checkpoints, runs, options, stopping, metrics)
{
    private static long _failAt;
    private static bool _failed;

    public static void Reset(long failAtGlobalStep) => (_failAt, _failed) = (failAtGlobalStep, false);

    protected override void OnStep(StepReport report)
    {
        if (!_failed && (long)report.Epoch * report.StepsPerEpoch + report.Step == _failAt)
        {
            _failed = true;
            throw new DiskOnFireException();
        }
    }
}

public sealed class DiskOnFireException() : PermanentRunFailureException("disk on fire");

/// <summary>The real TrainChunk whose connection is reset once, mid-chunk, as storage calls see during an outage.</summary>
public sealed class SocketFailingOnceTrainChunk(WorkerFiles files, Core.Engine.FineTuneEngine engine, CheckpointStore checkpoints, RunControl runs,
    IOptions<WorkflowOptions> options, WorkerStopping stopping, RunMetrics metrics)
    : TrainChunk(files, engine, checkpoints, runs, options, stopping, metrics)
{
    private static long _failAt;
    public static bool Failed { get; private set; }

    public static void Reset(long failAtGlobalStep) => (_failAt, Failed) = (failAtGlobalStep, false);

    protected override void OnStep(StepReport report)
    {
        if (!Failed && (long)report.Epoch * report.StepsPerEpoch + report.Step == _failAt)
        {
            Failed = true;
            throw new SocketException((int)SocketError.NotConnected);
        }
    }
}

/// <summary>The real TrainChunk whose worker dies every time it reaches the same step, as one killed for memory does.</summary>
public sealed class DyingTrainChunk(WorkerFiles files, Core.Engine.FineTuneEngine engine, CheckpointStore checkpoints, RunControl runs,
    IOptions<WorkflowOptions> options, WorkerStopping stopping, RunMetrics metrics)
    : TrainChunk(files, engine, checkpoints, runs, options, stopping, metrics)
{
    public static int Deaths { get; private set; }

    protected override void OnStep(StepReport report)
    {
        if ((long)report.Epoch * report.StepsPerEpoch + report.Step == 5)
        {
            Deaths++;
            throw new IOException("worker killed");
        }
    }
}

/// <summary>A TrainChunk that trains its first chunk, then keeps returning where it started, as one that finds nothing to do would.</summary>
public sealed class StuckTrainChunk(WorkerFiles files, Core.Engine.FineTuneEngine engine, CheckpointStore checkpoints, RunControl runs,
    IOptions<WorkflowOptions> options, WorkerStopping stopping, RunMetrics metrics)
    : TrainChunk(files, engine, checkpoints, runs, options, stopping, metrics)
{
    public static int Calls { get; private set; }

    public override async Task<TrainResult> RunAsync(TaskActivityContext context, TrainRequest request)
    {
        if (request.FromStep == 0) return await base.RunAsync(context, request);
        Calls++;
        return new TrainResult(request.FromStep, 0, (int)request.FromStep, request.Prepared.StepsPerEpoch, false, [], null, []);
    }
}

/// <summary>The real TrainChunk that, once, cuts storage off for a while when it reaches a step.</summary>
public sealed class OutageTrainChunk(WorkerFiles files, Core.Engine.FineTuneEngine engine, CheckpointStore checkpoints, RunControl runs,
    IOptions<WorkflowOptions> options, WorkerStopping stopping, RunMetrics metrics)
    : TrainChunk(files, engine, checkpoints, runs, options, stopping, metrics)
{
    private static OutageProxy? _proxy;
    private static long _at;
    private static TimeSpan _duration;
    public static DateTimeOffset? Began { get; private set; }

    public static void Reset(OutageProxy proxy, long atGlobalStep, TimeSpan duration) => (_proxy, _at, _duration, Began) = (proxy, atGlobalStep, duration, null);

    protected override void OnStep(StepReport report)
    {
        if (Began is null && (long)report.Epoch * report.StepsPerEpoch + report.Step == _at)
        {
            Began = DateTimeOffset.UtcNow;
            _proxy!.Outage(_duration);
        }
    }
}
