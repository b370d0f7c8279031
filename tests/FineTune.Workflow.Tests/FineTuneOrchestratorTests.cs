using System.Diagnostics.Metrics;
using System.Net.Sockets;
using System.Text.Json;
using FineTune.Core.Training;
using FineTune.Core.Weights;
using FineTune.Workflow.Activities;
using FineTune.Workflow.Jobs;
using FineTune.Workflow.Orchestration;
using FineTune.Workflow.Services;
using Microsoft.DurableTask;
using Moq;

namespace FineTune.Workflow.Tests;

/// <summary>
/// <see cref="FineTuneOrchestrator"/>'s decisions alone, against a mocked orchestration context (as durabletask-dotnet's
/// SampleUnitTests do): the activities answer from a script of 4 steps an epoch, so no model trains and each test takes
/// milliseconds. The end-to-end tests (<see cref="FineTuneOrchestrationTests"/>, <see cref="RunLifecycleTests"/>) prove
/// that the real activities give these answers.
/// </summary>
public sealed class FineTuneOrchestratorTests
{
    private const int StepsPerEpoch = 4;

    private static JobSpec Spec(int epochs, int maxStepsPerChunk, int? patience = null) => JobSpecReader.Read(JsonSerializer.Serialize(new
    {
        jobId = "scripted",
        dataset = new { location = "blob:datasets/scripted/" },
        training = new { epochs, batchSize = 4, maxStepsPerChunk, earlyStopping = patience is { } p ? new { patience = p } : null },
    }, WireJson.Options), localPaths: false);

    [Fact]
    public async Task ARunTrainsChunkByChunkThenEvaluatesAndPublishesItsBestEpoch()
    {
        // Chunks of 3 steps end inside epochs as well as at their ends; epoch 1 has the lowest validation loss.
        var script = new Script(losses: [0.5, 0.3, 0.4]);

        var result = await script.RunAsync(new FineTuneJob("scripted", Spec(epochs: 3, maxStepsPerChunk: 3)));

        Assert.NotNull(result);
        Assert.Equal([ActivityNames.AdmitRun, ActivityNames.FetchPretrainedWeights, ActivityNames.PrepareModel, ActivityNames.TrainChunk,
            ActivityNames.TrainChunk, ActivityNames.TrainChunk, ActivityNames.TrainChunk, ActivityNames.Evaluate, ActivityNames.Publish,
            ActivityNames.LeaveRun, ActivityNames.ReleaseRunFiles], script.Calls);
        Assert.Equal([0L, 3, 6, 9], script.Chunks.Select(c => c.FromStep));
        Assert.All(script.Chunks, c => Assert.Equal(3, c.MaxSteps));
        // The best epoch's checkpoint is the one at its end.
        Assert.Equal(2 * StepsPerEpoch, script.Evaluated!.Sequence);
        Assert.Equal((2L * StepsPerEpoch, 1), (script.Published!.Sequence, script.Published.BestEpoch));
        Assert.Equal([0, 1, 2], script.Published.History!.Select(e => e.Epoch));
        Assert.Equal((3, 1, false), (result.EpochsRun, result.BestEpoch, result.StoppedEarly));
        Assert.Equal(RunStage.Completed, script.Statuses[^1].Stage);
        Assert.Contains(script.Statuses, s => s is { Stage: RunStage.Training, Epoch: 2, Step: 1 });
    }

    [Fact]
    public async Task AFannedOutFeaturePassShowsItsShardsAsTheyFinishThenTrainsOnThemInOrder()
    {
        var script = new Script(losses: [0.5])
        {
            PassShards = [new("train-0000", "train", 0, 8), new("train-0001", "train", 8, 16), new("validation-0000", "validation", 0, 4)],
        };

        var result = await script.RunAsync(new FineTuneJob("scripted", Spec(epochs: 1, maxStepsPerChunk: StepsPerEpoch)));

        Assert.NotNull(result);
        var passing = script.Statuses.Where(s => s.FeaturePass is not null).ToList();
        Assert.Equal([new FeaturePassProgress(0, 3), new(1, 3), new(2, 3), new(3, 3)], passing.Select(s => s.FeaturePass));
        Assert.All(passing, s => Assert.Equal(RunStage.PreparingModel, s.Stage));
        var trainedOn = script.Chunks[0].Prepared;
        Assert.Equal(["train-0000", "train-0001", "validation-0000"], trainedOn.FeatureShards.Select(s => s.Shard));
        Assert.Empty(trainedOn.PassShards);
        // Training's status no longer counts shards.
        Assert.Null(script.Statuses[^1].FeaturePass);
    }

    [Fact]
    public async Task EarlyStoppingEndsTrainingPatienceEpochsAfterTheBestAndPublishesTheBest()
    {
        // Best at epoch 1; epochs 2 and 3 are worse, so patience 2 stops after epoch 3, not at the tenth.
        var script = new Script(losses: [0.5, 0.4, 0.45, 0.46, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]);

        var result = await script.RunAsync(new FineTuneJob("scripted", Spec(epochs: 10, maxStepsPerChunk: StepsPerEpoch, patience: 2)));

        Assert.NotNull(result);
        Assert.Equal(4, script.Chunks.Count);
        Assert.Equal((4, 1, true), (result.EpochsRun, result.BestEpoch, result.StoppedEarly));
        Assert.Equal(2 * StepsPerEpoch, script.Evaluated!.Sequence);
    }

    [Fact]
    public async Task EarlyStoppingIsDecidedOnlyWhereAChunkEndsAnEpoch()
    {
        // Patience 1, best epoch 1: the chunk ending at step 15 (inside epoch 3) already holds the worse epoch 2 but goes on;
        // the one ending epoch 4 (step 20) stops the run.
        var script = new Script(losses: [0.5, 0.4, 0.45, 0.46, 0.47, 0.1, 0.1, 0.1, 0.1, 0.1]);

        var result = await script.RunAsync(new FineTuneJob("scripted", Spec(epochs: 10, maxStepsPerChunk: 5, patience: 1)));

        Assert.NotNull(result);
        Assert.Equal([0L, 5, 10, 15], script.Chunks.Select(c => c.FromStep));
        Assert.Equal((5, 1, true), (result.EpochsRun, result.BestEpoch, result.StoppedEarly));
    }

    [Fact]
    public async Task ItContinuesAsNewEveryGenerationCarryingStepHistoryAndTimesAndKeepsItsSlot()
    {
        var first = new Script(losses: [0.5, 0.3, 0.4]);
        var job = new FineTuneJob("scripted", Spec(epochs: 3, maxStepsPerChunk: 3), ChunksPerGeneration: 2);

        Assert.Null(await first.RunAsync(job));

        // Two chunks, then a new generation: the slot and the run's files stay with it, nothing is evaluated.
        Assert.Equal([ActivityNames.AdmitRun, ActivityNames.FetchPretrainedWeights, ActivityNames.PrepareModel, ActivityNames.TrainChunk,
            ActivityNames.TrainChunk], first.Calls);
        var next = Assert.IsType<FineTuneJob>(Assert.Single(first.ContinuedAs));
        var carried = next.Carried!;
        Assert.Equal(6, carried.GlobalStep);
        Assert.Equal([0], carried.History.Select(e => e.Epoch));
        Assert.Contains(carried.Times, t => t.Stage == Stages.Training);
        // Dated by its first generation, which the statuses show (continuing as new resets the durable instance's own date).
        Assert.Equal(first.Now, next.CreatedAt);
        Assert.Equal(job with { CreatedAt = first.Now }, next with { Carried = null });
        Assert.All(first.Statuses, s => Assert.Equal(first.Now, s.CreatedAt));

        var second = new Script(losses: [0.5, 0.3, 0.4]) { Now = first.Now.AddHours(1) };
        var result = await second.RunAsync(next);
        Assert.All(second.Statuses, s => Assert.Equal(first.Now, s.CreatedAt));
        // Continuing as new clears the instance's status: the next generation sets where it stands before its first call.
        Assert.Equal(1, second.StatusesAtFirstCall);
        var resumed = second.Statuses[0];
        Assert.Equal((RunStage.Training, 1, 2, StepsPerEpoch, 3, (int?)0, (double?)0.5),
            (resumed.Stage, resumed.Epoch, resumed.Step, resumed.StepsPerEpoch, resumed.Epochs, resumed.BestEpoch, resumed.ValidationLoss));

        // The next generation neither fetches nor prepares again; it trains on from step 6 and ends the run.
        Assert.NotNull(result);
        Assert.Equal([ActivityNames.AdmitRun, ActivityNames.TrainChunk, ActivityNames.TrainChunk, ActivityNames.Evaluate, ActivityNames.Publish,
            ActivityNames.LeaveRun, ActivityNames.ReleaseRunFiles], second.Calls);
        Assert.Equal([6L, 9], second.Chunks.Select(c => c.FromStep));
        Assert.Equal([0, 1, 2], second.Published!.History!.Select(e => e.Epoch));
        Assert.Equal((3, 1), (result.EpochsRun, result.BestEpoch));
        Assert.Empty(second.ContinuedAs);
    }

    [Fact]
    public async Task AChunkThatDoesNotAdvanceFailsTheRunWhichLeavesItsSlotAndFiles()
    {
        // The second chunk returns where it started, as one whose checkpoints keep vanishing would.
        var script = new Script(losses: [0.5, 0.3, 0.4]) { Stuck = request => request.FromStep > 0 };

        var failure = await Assert.ThrowsAsync<ChunkDidNotAdvanceException>(() => script.RunAsync(new FineTuneJob("scripted", Spec(epochs: 3, maxStepsPerChunk: 3))));

        Assert.Contains("from step 3 returned step 3", failure.Message);
        Assert.Equal(2, script.Chunks.Count);
        Assert.Equal([ActivityNames.LeaveRun, ActivityNames.ReleaseRunFiles], script.Calls[^2..]);
        Assert.Null(script.Evaluated);
    }

    [Fact]
    public async Task AFailingActivityFailsTheRunWhichLeavesItsSlotAndFiles()
    {
        var script = new Script(losses: [0.5]) { EvaluateFailure = new IOException("storage gone for good") };

        await Assert.ThrowsAsync<IOException>(() => script.RunAsync(new FineTuneJob("scripted", Spec(epochs: 1, maxStepsPerChunk: 4))));

        Assert.Equal([ActivityNames.Evaluate, ActivityNames.LeaveRun, ActivityNames.ReleaseRunFiles], script.Calls[^3..]);
        Assert.Null(script.Published);
    }

    /// <summary>
    /// A run's end is counted once, as completed or as failed, by its kind; a continued-as-new generation ends nothing. Only
    /// this test's own measurements are read (an async-local mark), since other tests end runs in the same process.
    /// </summary>
    [Fact]
    public async Task ARunsEndIsCountedOnceAsCompletedOrFailed()
    {
        var ends = new List<(string Instrument, long Value, string? Kind)>();
        var mine = new AsyncLocal<bool> { Value = true };
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == WorkflowMetrics.MeterName && instrument.Name is WorkflowMetrics.RunsCompletedName or WorkflowMetrics.RunsFailedName)
                l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            if (!mine.Value) return;
            string? kind = null;
            foreach (var tag in tags) if (tag.Key == WorkflowMetrics.KindTag) kind = (string?)tag.Value;
            lock (ends) ends.Add((instrument.Name, value, kind));
        });
        listener.Start();

        await new Script(losses: [0.5, 0.3]).RunAsync(new FineTuneJob("scripted", Spec(epochs: 2, maxStepsPerChunk: 4)));
        await Assert.ThrowsAsync<IOException>(() => new Script(losses: [0.5]) { EvaluateFailure = new IOException("storage gone for good") }
            .RunAsync(new FineTuneJob("scripted", Spec(epochs: 1, maxStepsPerChunk: 4))));
        await Assert.ThrowsAsync<ChunkDidNotAdvanceException>(() => new Script(losses: [0.5, 0.3, 0.4]) { Stuck = request => request.FromStep > 0 }
            .RunAsync(new FineTuneJob("scripted", Spec(epochs: 3, maxStepsPerChunk: 3))));

        Assert.Equal([(WorkflowMetrics.RunsCompletedName, 1L, WorkflowMetrics.RunKind), (WorkflowMetrics.RunsFailedName, 1L, WorkflowMetrics.RunKind),
            (WorkflowMetrics.RunsFailedName, 1L, WorkflowMetrics.RunKind)], ends);
    }

    [Fact]
    public async Task ARunReadingAnotherRunsDataLeavesItsSlotButNotThoseFiles()
    {
        var script = new Script(losses: [0.5]);

        Assert.NotNull(await script.RunAsync(new FineTuneJob("scripted", Spec(epochs: 1, maxStepsPerChunk: 4), DataRun: "features")));

        Assert.Equal(ActivityNames.LeaveRun, script.Calls[^1]);
        Assert.DoesNotContain(ActivityNames.ReleaseRunFiles, script.Calls);
    }

    [Fact]
    public async Task AQueuedRunShowsItsPlaceBetweenAsksAndContinuesAsNewAfterAHundred()
    {
        var script = new Script(losses: [0.5]) { Admit = () => new Admission(false, 3, TimeSpan.FromSeconds(5)) };
        var job = new FineTuneJob("scripted", Spec(epochs: 1, maxStepsPerChunk: 4));

        Assert.Null(await script.RunAsync(job));

        Assert.Equal(100, script.Calls.Count);
        Assert.All(script.Calls, c => Assert.Equal(ActivityNames.AdmitRun, c));
        Assert.Equal(Enumerable.Repeat(TimeSpan.FromSeconds(5), 99), script.Timers);
        Assert.All(script.Statuses, s => Assert.Equal((RunStage.Queued, (int?)3), (s.Stage, s.QueuePosition)));
        // The same job, still waiting, dated by its first generation: it holds no slot to leave, and its files stay for when it runs.
        var continued = Assert.IsType<FineTuneJob>(Assert.Single(script.ContinuedAs));
        Assert.Equal(job with { CreatedAt = script.Now }, continued);
        Assert.All(script.Statuses, s => Assert.Equal(script.Now, s.CreatedAt));

        // Its next generation shows it queued before asking again (its place comes with the answer).
        var next = new Script(losses: [0.5]) { Admit = () => new Admission(false, 2, TimeSpan.FromSeconds(5)), Now = script.Now.AddHours(1) };
        Assert.Null(await next.RunAsync(continued));
        Assert.Equal(1, next.StatusesAtFirstCall);
        Assert.Equal((RunStage.Queued, (int?)null, (DateTime?)script.Now), (next.Statuses[0].Stage, next.Statuses[0].QueuePosition, next.Statuses[0].CreatedAt));
        Assert.Equal((RunStage.Queued, (int?)2), (next.Statuses[1].Stage, next.Statuses[1].QueuePosition));
    }

    [Fact]
    public async Task TransientFailuresAreRetriedButBadInputPermanentFailuresAndAnUnreachableHostAreNot()
    {
        var script = new Script(losses: [0.5]);
        await script.RunAsync(new FineTuneJob("scripted", Spec(epochs: 1, maxStepsPerChunk: 4)));
        var retry = script.Options.OfType<TaskOptions>().Distinct().Single().Retry!.Policy!;

        // As the worker's retry loop asks: with the framework's exception for the failed call, carrying the failure's details.
        bool Retried(Exception e) => retry.Handle(new DurableTask.Core.Exceptions.TaskFailedException(0, 0, ActivityNames.TrainChunk, "", e.Message, null)
        {
            FailureDetails = new DurableTask.Core.FailureDetails(e),
        });

        Assert.True(Retried(new IOException("connection reset")));
        // A framework type outside CoreLib once made the failure's own classification throw, which ended the retries.
        Assert.True(Retried(new SocketException((int)SocketError.ConnectionReset)));
        Assert.False(Retried(new InvalidJobSpecException([new FieldError("dataset", "missing")])));
        Assert.False(Retried(new ChunkDidNotAdvanceException("scripted", 3, 3)));
        Assert.False(Retried(new WeightsHostUnreachableException(new Uri("https://download.example/w.pth"), "refused", 3)));
        Assert.Equal(FineTuneOrchestrator.RetryBudget, retry.RetryTimeout);
    }

    /// <summary>
    /// A mocked <see cref="TaskOrchestrationContext"/> (strict: a call the script does not expect fails the test) whose
    /// activities answer as the real ones do for a run whose epoch <c>e</c> ends with validation loss <c>losses[e]</c>.
    /// </summary>
    private sealed class Script
    {
        private readonly Mock<TaskOrchestrationContext> _context = new(MockBehavior.Strict);
        public DateTime Now { get; init; } = new(2026, 12, 6, 0, 0, 0, DateTimeKind.Utc);
        private readonly IReadOnlyList<double> _losses;

        public List<string> Calls { get; } = [];
        public List<TaskOptions?> Options { get; } = [];
        public List<TrainRequest> Chunks { get; } = [];
        public List<RunStatus> Statuses { get; } = [];

        /// <summary>How many statuses were set before the first activity call.</summary>
        public int? StatusesAtFirstCall { get; private set; }
        public List<TimeSpan> Timers { get; } = [];
        public List<object?> ContinuedAs { get; } = [];
        public ModelRequest? Evaluated { get; private set; }
        public PublishRequest? Published { get; private set; }
        public Func<Admission> Admit { get; init; } = () => new Admission(true, 0, TimeSpan.Zero);
        public Func<TrainRequest, bool> Stuck { get; init; } = _ => false;
        public Exception? EvaluateFailure { get; init; }
        /// <summary>The shards the preparation leaves to a fanned-out pass.</summary>
        public IReadOnlyList<FeatureShardRange> PassShards { get; init; } = [];

        public Script(IReadOnlyList<double> losses)
        {
            _losses = losses;
            var weights = new WeightsRef("weights/resnet18.safetensors", new string('0', 64), "scripted");
            var prepared = new PreparedSummary(["animals", "plants"], 16, 4, 0, 0, 1026, 11_000_000, StepsPerEpoch, [], [new StageTime(Stages.DatasetScan, 1)]);
            // The run's end is counted (WorkflowMetrics) by the orchestration's kind, once it is past replaying.
            _context.SetupGet(c => c.Name).Returns(new TaskName(FineTuneOrchestrator.Name));
            _context.SetupGet(c => c.IsReplaying).Returns(false);
            Answer<FineTuneJob, Admission>(ActivityNames.AdmitRun, _ => Admit());
            Answer<FineTuneJob, WeightsRef>(ActivityNames.FetchPretrainedWeights, _ => weights);
            Answer<PrepareRequest, PreparedSummary>(ActivityNames.PrepareModel, _ => prepared with { PassShards = PassShards });
            Answer<FeatureShardRequest, ComputedFeatureShard>(ActivityNames.ComputeFeatureShard, request =>
                new ComputedFeatureShard(new FeatureShardRef(request.Shard.Shard, "features/" + request.Shard.Shard, new string('1', 64), 10), "worker"));
            Answer<TrainRequest, TrainResult>(ActivityNames.TrainChunk, Train);
            Answer<ModelRequest, EvaluationSummary>(ActivityNames.Evaluate, request =>
            {
                Evaluated = request;
                if (EvaluateFailure is { } failure) throw failure;
                return new EvaluationSummary("validation", 0.3, 0.9, null, 4, "report.json", "predictions.csv", []);
            });
            Answer<PublishRequest, PublishedModel>(ActivityNames.Publish, request =>
            {
                Published = request;
                return new PublishedModel("published/", "model.safetensors", "model.dat", "model_card.json", []);
            });
            Answer<string, bool>(ActivityNames.LeaveRun, _ => true);
            Answer<string[], int>(ActivityNames.ReleaseRunFiles, _ => 1);
            _context.SetupGet(c => c.CurrentUtcDateTime).Returns(() => Now);
            _context.Setup(c => c.SetCustomStatus(It.IsAny<object?>())).Callback((object? status) => Statuses.Add(Assert.IsType<RunStatus>(status)));
            _context.Setup(c => c.CreateTimer(It.IsAny<TimeSpan>(), It.IsAny<CancellationToken>()))
                .Returns((TimeSpan delay, CancellationToken _) =>
                {
                    Timers.Add(delay);
                    return Task.CompletedTask;
                });
            _context.Setup(c => c.ContinueAsNew(It.IsAny<object?>(), It.IsAny<bool>())).Callback((object? input, bool _) => ContinuedAs.Add(input));
        }

        public Task<FineTuneResult?> RunAsync(FineTuneJob job) => new FineTuneOrchestrator().RunAsync(_context.Object, job);

        /// <summary>As TrainChunk: up to MaxSteps steps on, with the epochs finished from the chunk's first epoch on.</summary>
        private TrainResult Train(TrainRequest request)
        {
            Chunks.Add(request);
            long total = (long)request.Job.Spec.Training.Epochs * StepsPerEpoch;
            long reached = Stuck(request) ? request.FromStep : Math.Min(request.FromStep + request.MaxSteps, total);
            int epoch = (int)(reached / StepsPerEpoch), step = (int)(reached % StepsPerEpoch);
            int fromEpoch = (int)(request.FromStep / StepsPerEpoch);
            var history = Enumerable.Range(fromEpoch, Math.Max(0, epoch - fromEpoch))
                .Select(e => new EpochMetrics(e, 1, 0.5, _losses[e], 0.5, 1e-3, 1)).ToList();
            return new TrainResult(reached, epoch, step, StepsPerEpoch, step == 0 && epoch > 0, history, 0.7, [new StageTime(Stages.Training, 1)]);
        }

        private void Answer<TInput, TResult>(string name, Func<TInput, TResult> answer) =>
            _context.Setup(c => c.CallActivityAsync<TResult>(It.Is<TaskName>(n => n.Name == name), It.IsAny<object?>(), It.IsAny<TaskOptions?>()))
                .Returns((TaskName _, object? input, TaskOptions? options) =>
                {
                    StatusesAtFirstCall ??= Statuses.Count;
                    Calls.Add(name);
                    Options.Add(options);
                    return Task.FromResult(answer(Assert.IsType<TInput>(input)));
                });
    }
}
