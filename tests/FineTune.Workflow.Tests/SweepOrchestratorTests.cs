using System.Text;
using System.Text.Json;
using FineTune.Core.Training;
using FineTune.Workflow.Activities;
using FineTune.Workflow.Jobs;
using FineTune.Workflow.Orchestration;
using FineTune.Workflow.Services;
using Microsoft.DurableTask;
using Microsoft.DurableTask.Converters;
using Moq;
using Xunit.Abstractions;

namespace FineTune.Workflow.Tests;

/// <summary>
/// <see cref="SweepOrchestrator"/>'s generations alone, against a mocked orchestration context whose trials cannot stack:
/// each trial's rung is a <see cref="TrialOrchestrator"/> answered from a script, so no model trains. The end-to-end test
/// (<see cref="SweepOrchestrationTests.ASweepContinuedAsNewBetweenTrainingsEndsAsInOneGeneration"/>) covers stacks.
/// </summary>
public sealed class SweepOrchestratorTests(ITestOutputHelper output)
{
    private const int StepsPerEpoch = 4;
    private static readonly int[] Epochs = [2, 4];
    private static readonly double[] LearningRates = [0.01, 0.3];

    /// <summary>
    /// Continued as new every few trainings (inside rungs too: the sweep waits for the trainings under way, then continues),
    /// the sweep trains each trial's rung once, under the same sub-orchestration id, and reports and publishes what it does in
    /// one generation. 4 trials, halving after epochs 1 and 2. Grid, 2 or 4 epochs by 2 learning rates: 4 trainings to epoch
    /// 1, then 2 to epoch 2 (t2, t4), where the sweep continues between them; t2 finished there still counts at that rung,
    /// which stops t4 (equal scores go to the lower index). Bayesian, 4 epochs: two rounds of 2 + 1 + 1.
    /// </summary>
    [Theory]
    [InlineData("grid", 5, new[] { 5, 1 })]
    [InlineData("bayesian", 3, new[] { 3, 3, 2 })]
    public async Task ContinuedAsNewInsideRungsItTrainsEachRungOnceAndEndsAsInOneGeneration(string method, int chunksPerGeneration, int[] trainings)
    {
        var spec = Spec(method);
        var one = new Script();
        var result = await one.RunAsync(new FineTuneJob("sw", spec));
        Assert.NotNull(result);
        Assert.Equal(trainings.Sum(), one.Trials.Count);

        var generations = new List<Script>();
        FineTuneJob? job = new("sw", spec, chunksPerGeneration);
        FineTuneResult? continued = null;
        while (job is not null)
        {
            // Each generation an hour after the last: the sweep stays dated by its first.
            var generation = new Script { Now = Script.Start.AddHours(generations.Count) };
            generations.Add(generation);
            continued = await generation.RunAsync(job);
            // As the backend hands it over: through JSON.
            job = generation.ContinuedAs.SingleOrDefault() is { } next ? JsonDataConverter.Default.Deserialize<FineTuneJob>(JsonDataConverter.Default.Serialize(next)) : null;
            Assert.True(continued is null == job is not null);
        }

        Assert.Equal(trainings, generations.Select(g => g.Trials.Count));
        Assert.All(generations.SelectMany(g => g.Statuses), s => Assert.Equal(Script.Start, s.CreatedAt));
        // Every generation but the first starts from what it carries: no feature pass again.
        Assert.All(generations.Skip(1), g => Assert.DoesNotContain(ActivityNames.PrepareModel, g.Calls));
        Assert.Equal(one.Trials, generations.SelectMany(g => g.Trials));
        Assert.Equal(Json(one.Reported), Json(generations[^1].Reported));
        Assert.Equal(Json(one.Published), Json(generations[^1].Published));
        Assert.Equal(Json(result with { Times = [] }), Json(continued! with { Times = [] }));
        // The stage times of every generation add up.
        Assert.Equal(Json(result.Times), Json(continued.Times));
        Assert.Equal([ActivityNames.LeaveRun, ActivityNames.WriteSweepReport, ActivityNames.ReleaseRunFiles], generations[^1].Calls[^3..]);
        Assert.All(generations.SkipLast(1), g => Assert.DoesNotContain(ActivityNames.ReleaseRunFiles, g.Calls));
    }

    /// <summary>
    /// The largest sweep (<see cref="SweepPlanner.MaxTrialsLimit"/> trials, bayesian) at the product's default of trainings
    /// per generation trains every trial, and what each generation carries to the next, as the backend stores it (JSON), is a
    /// few hundred bytes a trial and a few epochs each (its best, its last, the rungs' ends), however many epochs the trials
    /// ran: 300 epochs each would be ~65 MB of history, past what the SDK's worker sends (README, "Sweeps", gives the figures).
    /// </summary>
    [Theory]
    [InlineData(4, true)]
    [InlineData(300, false)]
    public async Task TheLargestSweepCarriesAFewEpochsATrialHoweverLongTheyRan(int epochs, bool halving)
    {
        var spec = Spec("bayesian", trials: SweepPlanner.MaxTrialsLimit, parallelism: SweepPlanner.MaxParallelism, epochs, halving);
        // The epochs a trial keeps: best, last, and one a rung.
        int kept = 2 + SweepOrchestrator.Rungs(spec.Sweep!.EarlyTermination, epochs).Count;
        FineTuneJob? job = new("sw", spec);
        var carried = new List<(int Bytes, int Epochs)>();
        int generations = 0;
        var trials = new HashSet<string>(StringComparer.Ordinal);
        while (job is not null)
        {
            var generation = new Script();
            generations++;
            await generation.RunAsync(job);
            trials.UnionWith(generation.Trials.Select(t => t.Split(':')[0]));
            string? next = generation.ContinuedAs.SingleOrDefault() is { } input ? JsonDataConverter.Default.Serialize(input) : null;
            job = next is null ? null : JsonDataConverter.Default.Deserialize<FineTuneJob>(next);
            if (next is not null) carried.Add((Encoding.UTF8.GetByteCount(next), job!.CarriedSweep!.Outcomes.Sum(o => o.History.Count)));
        }
        Assert.True(generations > 1, "the sweep never continued as new");
        output.WriteLine($"{generations} generations; carried input {carried.Min(c => c.Bytes)}–{carried.Max(c => c.Bytes)} bytes, "
            + $"{carried[^1].Epochs} trial epochs recorded at the last");
        Assert.Equal(SweepPlanner.MaxTrialsLimit, trials.Count);
        Assert.All(carried, c => Assert.InRange(c.Epochs, 1, kept * SweepPlanner.MaxTrialsLimit));
        Assert.All(carried, c => Assert.InRange(c.Bytes, 1, MaxCarriedBytes + MaxCarriedBytesPerEpoch * c.Epochs));
    }

    /// <summary>The plan's state besides the outcomes (rounds, a bayesian sweep's values, groups), and an epoch's metrics.</summary>
    private const int MaxCarriedBytes = 256 * SweepPlanner.MaxTrialsLimit, MaxCarriedBytesPerEpoch = 256;

    private static string Json(object? value) => JsonSerializer.Serialize(value, WireJson.Options);

    private static JobSpec Spec(string method, int trials = 4, int parallelism = 2, int epochs = 4, bool halving = true) => JobSpecReader.Read(JsonSerializer.Serialize(new
    {
        jobId = "sw",
        dataset = new { location = "blob:datasets/scripted/" },
        training = new { epochs, batchSize = 4 },
        sweep = new
        {
            method,
            parameters = method == "grid"
                ? new Dictionary<string, object> { ["training.epochs"] = Epochs, ["training.learningRate"] = LearningRates }
                : new Dictionary<string, object> { ["training.learningRate"] = new { min = 1e-3, max = 0.3, log = true } },
            maxTrials = trials,
            parallelism,
            metric = "val_loss",
            earlyTermination = halving ? new { policy = "halving", graceEpochs = 1 } : null,
        },
    }, WireJson.Options), localPaths: false);

    /// <summary>
    /// One generation's mocked context (strict: a call the script does not expect fails the test). A trial's epoch e ends with
    /// validation loss 1 / (1 + 10 · lr · (e + 1)): the higher learning rates win.
    /// </summary>
    private sealed class Script
    {
        private readonly Mock<TaskOrchestrationContext> _context = new(MockBehavior.Strict);
        public static readonly DateTime Start = new(2026, 12, 6, 0, 0, 0, DateTimeKind.Utc);

        public DateTime Now { get; init; } = Start;
        public List<RunStatus> Statuses { get; } = [];

        public List<string> Calls { get; } = [];
        /// <summary>The trials' sub-orchestrations by instance id, as started.</summary>
        public List<string> Trials { get; } = [];
        public List<object?> ContinuedAs { get; } = [];
        public SweepReportRequest? Reported { get; private set; }
        public PublishRequest? Published { get; private set; }

        public Script()
        {
            var weights = new WeightsRef("weights/resnet18.safetensors", new string('0', 64), "scripted");
            var prepared = new PreparedSummary(["animals", "plants"], 16, 4, 0, 0, 1026, 11_000_000, StepsPerEpoch, [], [new StageTime(Stages.FeaturePass, 1)]);
            _context.SetupGet(c => c.Name).Returns(new TaskName(SweepOrchestrator.Name));
            _context.SetupGet(c => c.IsReplaying).Returns(false);
            _context.SetupGet(c => c.CurrentUtcDateTime).Returns(() => Now);
            Answer<FineTuneJob, Admission>(ActivityNames.AdmitRun, _ => new Admission(true, 0, TimeSpan.Zero));
            Answer<FineTuneJob, WeightsRef>(ActivityNames.FetchPretrainedWeights, _ => weights);
            Answer<PrepareRequest, PreparedSummary>(ActivityNames.PrepareModel, _ => prepared);
            Answer<ModelRequest, EvaluationSummary>(ActivityNames.Evaluate, _ => new EvaluationSummary("validation", 0.3, 0.9, null, 4, "report.json", "predictions.csv",
                [new StageTime(Stages.Evaluation, 1)]));
            Answer<PublishRequest, PublishedModel>(ActivityNames.Publish, request =>
            {
                Published = request;
                return new PublishedModel("published/", "model.safetensors", "model.dat", "model_card.json", [new StageTime(Stages.Publish, 1)]);
            });
            Answer<SweepReportRequest, SweepSummary>(ActivityNames.WriteSweepReport, request =>
            {
                Reported = request;
                return new SweepSummary(request.Trials[0].JobId, request.Metric, request.Trials, 0, "sweep.json", "sweep.png");
            });
            Answer<string, bool>(ActivityNames.LeaveRun, _ => true);
            Answer<string[], int>(ActivityNames.ReleaseRunFiles, _ => 1);
            _context.Setup(c => c.CallSubOrchestratorAsync<TrialOutcome>(It.Is<TaskName>(n => n.Name == TrialOrchestrator.Name), It.IsAny<object?>(),
                    It.IsAny<TaskOptions?>()))
                .Returns((TaskName _, object? input, TaskOptions? options) =>
                {
                    Trials.Add(Assert.IsType<SubOrchestrationOptions>(options).InstanceId!);
                    return Task.FromResult(Train(Assert.IsType<TrialRequest>(input)));
                });
            _context.Setup(c => c.SetCustomStatus(It.IsAny<object?>())).Callback((object? status) => Statuses.Add(Assert.IsType<RunStatus>(status)));
            _context.Setup(c => c.ContinueAsNew(It.IsAny<object?>(), It.IsAny<bool>())).Callback((object? input, bool _) => ContinuedAs.Add(input));
        }

        public Task<FineTuneResult?> RunAsync(FineTuneJob job) => new SweepOrchestrator().RunAsync(_context.Object, job);

        /// <summary>As a trial's sub-orchestration: on from its history to the rung's epoch (or its last).</summary>
        private static TrialOutcome Train(TrialRequest request)
        {
            var job = request.Trial;
            double lr = job.Spec.Training.LearningRate;
            int epochs = job.Spec.Training.Epochs, reached = Math.Min(request.UntilEpoch, epochs);
            // The sweep hands over only the epochs it decides on; the last tells where the trial stands.
            int done = job.Carried!.History is [.., var last] ? last.Epoch + 1 : 0;
            var history = job.Carried.History.Concat(Enumerable.Range(done, reached - done)
                .Select(e => new EpochMetrics(e, 1, 0.5, 1 / (1 + 10 * lr * (e + 1)), 0.5, lr, 1))).ToList();
            return new TrialOutcome(job.JobId, (long)reached * StepsPerEpoch, history, reached == epochs, false, ["scripted"], [new StageTime(Stages.Training, 1)]);
        }

        private void Answer<TInput, TResult>(string name, Func<TInput, TResult> answer) =>
            _context.Setup(c => c.CallActivityAsync<TResult>(It.Is<TaskName>(n => n.Name == name), It.IsAny<object?>(), It.IsAny<TaskOptions?>()))
                .Returns((TaskName _, object? input, TaskOptions? _) =>
                {
                    Calls.Add(name);
                    return Task.FromResult(answer(Assert.IsType<TInput>(input)));
                });
    }
}
