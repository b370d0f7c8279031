using System.Diagnostics.Metrics;
using System.Text;
using System.Text.Json;
using FineTune.Core.Data;
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

namespace FineTune.Workflow.Tests;

public sealed class SweepOrchestrationTests
{
    private static readonly double[] LearningRates = [0.00001, 0.0001, 0.001, 0.01];

    [Fact]
    public async Task TrialsShareOneFeaturePassPoorOnesStopAtRungsAndTheBestIsPublished()
    {
        await using var host = await WorkflowHost.StartAsync();
        var spec = JobSpecReader.Read(JsonSerializer.Serialize(new
        {
            jobId = "swept",
            dataset = new { location = await host.UploadDatasetAsync("tux", perClass: 6), resize = "pad" },
            training = new { epochs = 3, batchSize = 4 },
            seed = 7,
            sweep = new
            {
                parameters = new Dictionary<string, object> { ["training.learningRate"] = LearningRates },
                parallelism = 2,
                metric = "val_loss",
                earlyTermination = new { policy = "halving", graceEpochs = 1 },
            },
        }, WireJson.Options), localPaths: false);

        // The trials' epochs as metrics (issue 26.3), recorded where their metrics.jsonl lines are written: by the stack.
        var epochs = new List<(string? RunId, string Instrument, double Value)>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == WorkflowMetrics.MeterName) l.EnableMeasurementEvents(instrument);
        };
        void Measured(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            var tagged = tags.ToArray();
            if (!tagged.Contains(new(WorkflowMetrics.SweepIdTag, "swept"))) return;
            lock (epochs) epochs.Add(((string?)tagged.Single(t => t.Key == WorkflowMetrics.RunIdTag).Value, instrument.Name, value));
        }
        listener.SetMeasurementEventCallback<double>((instrument, value, tags, _) => Measured(instrument, value, tags));
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) => Measured(instrument, value, tags));
        listener.Start();

        var client = host.Host.Client;
        await client.ScheduleNewOrchestrationInstanceAsync(SweepOrchestrator.Name, new FineTuneJob("swept", spec), new StartOrchestrationOptions("swept"));
        var status = await host.WaitForEndAsync("swept", TimeSpan.FromMinutes(5));
        Assert.True(status.RuntimeStatus == OrchestrationRuntimeStatus.Completed, $"{status.RuntimeStatus}: {status.FailureDetails}");
        var result = status.ReadOutputAs<FineTuneResult>()!;
        var sweep = result.Sweep!;

        // Rungs after epochs 1 and 2 keep the better half: 4 → 2 → 1 trial trains all 3 epochs.
        Assert.Equal(4, sweep.Trials.Count);
        Assert.Equal([("completed", 3), ("terminated", 1), ("terminated", 1), ("terminated", 2)],
            sweep.Trials.Select(t => (t.State, t.EpochsRun)).Order());
        // Best first, by the best epoch each trial reached (a terminated trial's early epoch can win).
        Assert.Equal(sweep.Trials[0].JobId, sweep.BestTrial);
        Assert.Equal(sweep.Trials.Select(t => t.Score).OrderDescending(), sweep.Trials.Select(t => t.Score));
        // Lowest learning rates learn slowest on this data; the sweep must not pick them.
        Assert.NotEqual("swept-t1", sweep.BestTrial);

        // One backbone pass, in the feature run; the trials train on it as one stack, which keeps the checkpoints; the best
        // trial's best epoch becomes a checkpoint of its own run, which is published.
        Assert.Equal(1, sweep.FeaturePasses);
        Assert.True(await host.Store.ExistsAsync(new RunLayout("swept-f0").FeaturesOf(FeatureCache.ShardName(DatasetSplits.Train, 0)), default));
        Assert.NotEmpty(await ListAsync(host.Store, new RunLayout("swept-s1").Checkpoints));
        Assert.Empty(await ListAsync(host.Store, new RunLayout("swept-s2").Checkpoints));
        foreach (var trial in sweep.Trials)
        {
            Assert.False(await host.Store.ExistsAsync(new RunLayout(trial.JobId).FeaturesOf(FeatureCache.ShardName(DatasetSplits.Train, 0)), default));
            Assert.Equal(trial.JobId == sweep.BestTrial, (await ListAsync(host.Store, new RunLayout(trial.JobId).Checkpoints)).Count > 0);
        }

        // The best trial is evaluated and published like a run; the sweep's report compares every trial.
        Assert.Equal(new RunLayout(sweep.BestTrial).ModelCard, result.Published.ModelCardName);
        Assert.True(await host.Store.ExistsAsync(result.Published.SafetensorsName, default));
        var card = JsonDocument.Parse(await ReadAsync(host.Store, result.Published.ModelCardName)).RootElement;
        Assert.Equal(sweep.BestTrial, card.GetProperty("jobId").GetString());
        // Its card has every epoch it ran, as its metrics recorded them (the sweep holds only those it decides on).
        var history = card.GetProperty("history").EnumerateArray().ToList();
        Assert.Equal(Enumerable.Range(0, sweep.Trials[0].EpochsRun), history.Select(e => e.GetProperty("epoch").GetInt32()));
        Assert.Equal(sweep.Trials[0].ValidationLoss, history[sweep.Trials[0].BestEpoch!.Value].GetProperty("validationLoss").GetDouble());
        var report = JsonDocument.Parse(await ReadAsync(host.Store, new RunLayout("swept").SweepReport)).RootElement;
        Assert.Equal(("val_loss", sweep.BestTrial), (report.GetProperty("metric").GetString(), report.GetProperty("best").GetString()));
        Assert.Equal(4, report.GetProperty("trials").GetArrayLength());
        Assert.True(await host.Store.ExistsAsync(new RunLayout("swept").SweepPlot, default));
        var progress = status.ReadCustomStatusAs<RunStatus>()!;
        Assert.Equal((RunStage.Completed, 4, 4), (progress.Stage, progress.Sweep!.Trials, progress.Sweep.Finished));

        foreach (var trial in sweep.Trials)
        {
            var lines = await RunMetrics.ReadAsync(host.Store, trial.JobId, default);
            lock (epochs)
            {
                var recorded = epochs.Where(e => e.RunId == trial.JobId).ToList();
                Assert.Equal(lines.Select(l => l.ValidationAccuracy), recorded.Where(e => e.Instrument == WorkflowMetrics.ValidationAccuracyName).Select(e => e.Value));
                Assert.Equal(trial.EpochsRun, recorded.Count(e => e.Instrument == WorkflowMetrics.EpochsCompletedName));
            }
        }
    }

    /// <summary>
    /// A bayesian sweep runs in rounds of `parallelism` trials, each proposed from the results recorded before it: the
    /// second round's trials are the planner's proposals given the first round's scores, and each round has a stack of its own.
    /// </summary>
    [Fact]
    public async Task BayesianRoundsProposeFromRecordedResults()
    {
        await using var host = await WorkflowHost.StartAsync();
        var spec = JobSpecReader.Read(JsonSerializer.Serialize(new
        {
            jobId = "tpe",
            dataset = new { location = await host.UploadDatasetAsync("tux", perClass: 4), resize = "pad" },
            training = new { epochs = 2, batchSize = 4 },
            sweep = new
            {
                method = "bayesian",
                parameters = new Dictionary<string, object> { ["training.learningRate"] = new { min = 1e-4, max = 0.1, log = true } },
                maxTrials = 4,
                parallelism = 2,
            },
        }, WireJson.Options), localPaths: false);

        await host.Host.Client.ScheduleNewOrchestrationInstanceAsync(SweepOrchestrator.Name, new FineTuneJob("tpe", spec), new StartOrchestrationOptions("tpe"));
        var status = await host.WaitForEndAsync("tpe", TimeSpan.FromMinutes(5));
        Assert.True(status.RuntimeStatus == OrchestrationRuntimeStatus.Completed, $"{status.RuntimeStatus}: {status.FailureDetails}");
        var trials = status.ReadOutputAs<FineTuneResult>()!.Sweep!.Trials.OrderBy(t => t.Index).ToList();
        Assert.Equal(4, trials.Count);

        var first = trials.Take(2).Select(t => new ObservedTrial(t.Index, t.Parameters, t.Score)).ToList();
        var second = SweepPlanner.Propose(spec, first, 2);
        Assert.Equal(second.Select(t => SweepPlanner.Describe(t.Parameters)), trials.Skip(2).Select(t => SweepPlanner.Describe(t.Parameters)));
        foreach (var stack in (string[])["tpe-s1", "tpe-s2"]) Assert.NotEmpty(await ListAsync(host.Store, new RunLayout(stack).Checkpoints));
        Assert.Empty(await ListAsync(host.Store, new RunLayout("tpe-s3").Checkpoints));
    }

    /// <summary>A cancel of the sweep stops its stacks' training too (they watch the sweep's cancel request).</summary>
    [Fact]
    public async Task CancellingASweepStopsItsTrials()
    {
        await using var host = await WorkflowHost.StartAsync();
        var spec = JobSpecReader.Read(JsonSerializer.Serialize(new
        {
            jobId = "cancelled-sweep",
            dataset = new { location = await host.UploadDatasetAsync("tux", perClass: 4), resize = "pad" },
            // The most a spec allows: stacked heads train 200 epochs of these photos in seconds, before any cancel lands.
            training = new { epochs = 10_000, batchSize = 4 },
            sweep = new { parameters = new Dictionary<string, object> { ["training.learningRate"] = LearningRates[2..] }, parallelism = 2 },
        }, WireJson.Options), localPaths: false);
        var client = host.Host.Client;
        var runs = host.Host.Services.GetRequiredService<RunControl>();
        Assert.True((await new DurableClientScheduler(client).StartAsync(spec, runs, default)).Started);
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        while ((await ListAsync(host.Store, new RunLayout("cancelled-sweep-s1").Checkpoints)).Count == 0) await Task.Delay(200, timeout.Token);

        Assert.Null(await runs.CancelAsync(new DurableClientScheduler(client), "cancelled-sweep", default));

        var sweep = await client.WaitForInstanceCompletionAsync("cancelled-sweep", timeout.Token);
        Assert.Equal(OrchestrationRuntimeStatus.Terminated, sweep.RuntimeStatus);
        // A stack's call removes its running marker as it returns: none left is every stack's training over. Broken, the
        // stacks train their 10000 epochs on, and this waits past the timeout or finds them finished.
        while ((await ListAsync(host.Store, new RunLayout("cancelled-sweep").Running)).Count > 0) await Task.Delay(200, timeout.Token);
        var checkpoints = host.Host.Services.GetRequiredService<CheckpointStore>();
        foreach (var stack in (string[])["cancelled-sweep-s1", "cancelled-sweep-s2"])
        {
            if (await TrainStackedTrials.LatestAsync(checkpoints, stack, default) is not { } latest) continue;
            Assert.All(latest.State.Members, m => Assert.True(m.Epoch < 10_000 && !m.StoppedEarly, $"{stack}: epoch {m.Epoch}, stopped early: {m.StoppedEarly}"));
        }
    }

    /// <summary>
    /// A sweep that continues as new before every training after its generation's first (a grid's rungs; a bayesian sweep's
    /// rounds and rungs) ends as the same sweep in one generation does: the same best trial, the same report and
    /// byte-identical published weights; and it ran as many generations as trainings, each holding one in its history.
    /// Without continue-as-new it runs one generation holding them all, as the default sweep here does.
    /// </summary>
    [Theory]
    [InlineData("grid")]
    [InlineData("bayesian")]
    public async Task ASweepContinuedAsNewBetweenTrainingsEndsAsInOneGeneration(string method)
    {
        var runs = await Task.WhenAll(SweepAsync(method, chunksPerGeneration: null), SweepAsync(method, chunksPerGeneration: 1));
        var (one, continued) = (runs[0], runs[1]);

        Assert.Equal(one.Best, continued.Best);
        Assert.Equal(one.Report, continued.Report);
        Assert.Equal(one.Weights, continued.Weights);
        // Grid: a stack trained to 3 rungs. Bayesian: 2 rounds of a stack trained to 2 rungs.
        Assert.Equal((1, method == "grid" ? 3 : 4), (one.Generations, one.Trainings));
        Assert.Equal((one.Trainings, one.Trainings), (continued.Generations, continued.Trainings));
    }

    /// <summary>
    /// A 4-trial sweep with successive halving after epoch 1 (bayesian: two rounds of 2), in a host of its own (null: the
    /// default generations): its best trial, report and published weights, its generations and its stacks' trainings.
    /// </summary>
    private static async Task<(string Best, byte[] Report, byte[] Weights, int Generations, int Trainings)> SweepAsync(string method, int? chunksPerGeneration)
    {
        var counts = new Counts();
        await using var host = await WorkflowHost.StartAsync(registry =>
        {
            foreach (var (name, type) in WorkflowServices.Orchestrators)
            {
                if (name == SweepOrchestrator.Name) registry.AddOrchestrator(name, () => new CountedSweep(counts));
                else registry.AddOrchestrator(name, type);
            }
            foreach (var (name, type) in WorkflowServices.Activities)
            {
                if (name == ActivityNames.TrainStackedTrials) registry.AddActivity(name, sp => new CountedStack(ActivatorUtilities.CreateInstance<TrainStackedTrials>(sp), counts));
                else registry.AddActivity(name, type);
            }
        });
        var spec = JobSpecReader.Read(JsonSerializer.Serialize(new
        {
            jobId = "generations",
            dataset = new { location = await host.UploadDatasetAsync("tux", perClass: 4), resize = "pad" },
            training = new { epochs = method == "grid" ? 3 : 2, batchSize = 4 },
            seed = 7,
            sweep = new
            {
                method,
                parameters = new Dictionary<string, object>
                {
                    ["training.learningRate"] = method == "grid" ? LearningRates : (object)new { min = 1e-4, max = 0.1, log = true },
                },
                maxTrials = 4,
                parallelism = 2,
                metric = "val_loss",
                earlyTermination = new { policy = "halving", graceEpochs = 1 },
            },
        }, WireJson.Options), localPaths: false);
        var job = chunksPerGeneration is { } chunks ? new FineTuneJob("generations", spec, chunks) : new FineTuneJob("generations", spec);
        await host.Host.Client.ScheduleNewOrchestrationInstanceAsync(SweepOrchestrator.Name, job, new StartOrchestrationOptions("generations"));
        var status = await host.WaitForEndAsync("generations", TimeSpan.FromMinutes(3));
        Assert.True(status.RuntimeStatus == OrchestrationRuntimeStatus.Completed, $"{status.RuntimeStatus}: {status.FailureDetails}");
        var result = status.ReadOutputAs<FineTuneResult>()!;
        await using var weights = await host.Store.OpenReadAsync(result.Published.SafetensorsName, default);
        var bytes = new MemoryStream();
        await weights.CopyToAsync(bytes);
        return (result.Sweep!.BestTrial, Encoding.UTF8.GetBytes(await ReadAsync(host.Store, new RunLayout("generations").SweepReport)), bytes.ToArray(),
            counts.Generations, counts.Trainings);
    }

    /// <summary>
    /// A stack's worker killed after its checkpoint, before its trials' metrics were written (here: the call deletes them and
    /// fails): the retry finds the checkpoint and writes them whole, so the best trial's card, which reads them, has every epoch.
    /// </summary>
    [Fact]
    public async Task AStackKilledBetweenItsCheckpointAndItsTrialsMetricsLeavesThemWhole()
    {
        var killed = new HashSet<(string, int)>();
        await using var host = await WorkflowHost.StartAsync(registry =>
        {
            foreach (var (name, type) in WorkflowServices.Orchestrators) registry.AddOrchestrator(name, type);
            foreach (var (name, type) in WorkflowServices.Activities)
            {
                if (name == ActivityNames.TrainStackedTrials)
                    registry.AddActivity(name, sp => new KilledAfterCheckpoint(ActivatorUtilities.CreateInstance<TrainStackedTrials>(sp), sp.GetRequiredService<IArtifactStore>(), killed));
                else registry.AddActivity(name, type);
            }
        });
        var spec = JobSpecReader.Read(JsonSerializer.Serialize(new
        {
            jobId = "unrecorded",
            dataset = new { location = await host.UploadDatasetAsync("tux", perClass: 4), resize = "pad" },
            training = new { epochs = 3, batchSize = 4, earlyStopping = new { patience = 1 } },
            seed = 7,
            sweep = new { parameters = new Dictionary<string, object> { ["training.learningRate"] = LearningRates }, parallelism = 2, metric = "val_loss" },
        }, WireJson.Options), localPaths: false);
        await host.Host.Client.ScheduleNewOrchestrationInstanceAsync(SweepOrchestrator.Name, new FineTuneJob("unrecorded", spec), new StartOrchestrationOptions("unrecorded"));
        var status = await host.WaitForEndAsync("unrecorded", TimeSpan.FromMinutes(3));
        Assert.True(status.RuntimeStatus == OrchestrationRuntimeStatus.Completed, $"{status.RuntimeStatus}: {status.FailureDetails}");
        var sweep = status.ReadOutputAs<FineTuneResult>()!.Sweep!;

        Assert.NotEmpty(killed);
        foreach (var trial in sweep.Trials)
            Assert.Equal(trial.EpochsRun, (await RunMetrics.ReadAsync(host.Store, trial.JobId, default)).Count);
        var card = JsonDocument.Parse(await ReadAsync(host.Store, new RunLayout(sweep.BestTrial).ModelCard)).RootElement;
        Assert.Equal(sweep.Trials[0].EpochsRun, card.GetProperty("history").GetArrayLength());
    }

    /// <summary>Each stack's first call of a rung trains and checkpoints, then loses its trials' metrics and fails.</summary>
    private sealed class KilledAfterCheckpoint(TrainStackedTrials stack, IArtifactStore store, HashSet<(string, int)> killed) : TaskActivity<StackRequest, StackResult>
    {
        public override async Task<StackResult> RunAsync(TaskActivityContext context, StackRequest request)
        {
            var result = await stack.RunAsync(context, request);
            lock (killed)
            {
                if (!killed.Add((request.Stack.JobId, request.UntilEpoch))) return result;
            }
            foreach (var trial in request.Trials) await store.DeleteAsync(new RunLayout(trial.JobId).Metrics, default);
            throw new IOException($"stack {request.Stack.JobId} killed after its checkpoint at epoch {request.UntilEpoch}");
        }
    }

    private sealed class Counts
    {
        public int Generations, Trainings;
    }

    /// <summary>
    /// The sweep's orchestrator, counting its generations: a generation's first execution is the only one not replaying at its
    /// start (the in-memory backend serves no history to count).
    /// </summary>
    private sealed class CountedSweep(Counts counts) : TaskOrchestrator<FineTuneJob, FineTuneResult?>
    {
        public override Task<FineTuneResult?> RunAsync(TaskOrchestrationContext context, FineTuneJob job)
        {
            if (!context.IsReplaying) Interlocked.Increment(ref counts.Generations);
            return new SweepOrchestrator().RunAsync(context, job);
        }
    }

    private sealed class CountedStack(TrainStackedTrials stack, Counts counts) : TaskActivity<StackRequest, StackResult>
    {
        public override Task<StackResult> RunAsync(TaskActivityContext context, StackRequest request)
        {
            Interlocked.Increment(ref counts.Trainings);
            return stack.RunAsync(context, request);
        }
    }

    private static async Task<List<string>> ListAsync(IArtifactStore store, string prefix)
    {
        var names = new List<string>();
        await foreach (var item in store.ListAsync(prefix, default)) names.Add(item.Name);
        return names;
    }

    private static async Task<string> ReadAsync(IArtifactStore store, string name)
    {
        await using var stream = await store.OpenReadAsync(name, default);
        return await new StreamReader(stream).ReadToEndAsync();
    }
}
