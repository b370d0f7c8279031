using FineTune.Core.Training;
using FineTune.Workflow.Activities;
using FineTune.Workflow.Jobs;
using Microsoft.DurableTask;

namespace FineTune.Workflow.Orchestration;

/// <summary>
/// A hyper-parameter sweep as a durable fan-out. Trials that see the same images through the same frozen backbone
/// share one feature pass (fetch weights + prepare model once per group), so a head trial costs only its training.
/// Each trial is a sub-orchestration (<see cref="TrialOrchestrator"/>) with its own checkpoints, at most
/// <see cref="SweepSpec.Parallelism"/> at once, on whichever workers the task hub has. With early termination, trials
/// train rung by rung (grace epochs, then twice as many, …) and the orchestrator stops the poor ones at each rung.
/// The best trial is evaluated (on the test split when there is one) and published like a normal run; the sweep
/// report compares every trial.
/// </summary>
[DurableTask(Name)]
public sealed class SweepOrchestrator : TaskOrchestrator<FineTuneJob, FineTuneResult?>
{
    public const string Name = "FineTuneSweep";

    /// <summary>The sweep, its feature runs' scratch released when it completes or fails (not when it continues as new).</summary>
    public override Task<FineTuneResult?> RunAsync(TaskOrchestrationContext context, FineTuneJob job)
    {
        job = FineTuneOrchestrator.Dated(context, job);
        return FineTuneOrchestrator.ReleasingAsync(context, job, FeatureRuns(job), () => RunTrialsAsync(context, job), result => result is not null);
    }

    /// <summary>The runs whose dataset copy and cached features the sweep's trials share, one per feature group.</summary>
    public static string[] FeatureRuns(FineTuneJob job) =>
        [.. SweepPlanner.Plan(job.Spec).Select(t => t.FeatureGroup).Distinct().Select(g => SweepPlanner.FeatureRunId(job.JobId, g))];

    /// <summary>
    /// The trials round by round and rung by rung, then the best one evaluated and published. After
    /// <see cref="FineTuneJob.ChunksPerGeneration"/> trainings (a stack's or a trial's, to a rung) it continues as new before
    /// starting another, once those under way have ended, carrying <see cref="SweepCarried"/>: its history stays bounded
    /// however many trials and rungs the sweep has.
    /// </summary>
    private static async Task<FineTuneResult?> RunTrialsAsync(TaskOrchestrationContext context, FineTuneJob job)
    {
        var sweep = job.Spec.Sweep ?? throw new ArgumentException("the job has no sweep", nameof(job));
        // Grid and random: every trial at once. Bayesian: rounds of `parallelism` trials, each proposed from the results so far.
        var planned = SweepPlanner.Plan(job.Spec);
        var metric = sweep.Metric;
        int maxEpochs = planned.Max(t => t.Spec.Training.Epochs);
        var carried = job.CarriedSweep;
        var startedAt = carried?.StartedAt ?? context.CurrentUtcDateTime;
        var times = new List<StageTime>(carried?.Times ?? []);
        var groups = (carried?.Groups ?? []).ToDictionary(g => g.Group, g => (RunId: SweepPlanner.FeatureRunId(job.JobId, g.Group), g.Weights, g.Prepared));
        var rounds = new List<int>(carried?.Rounds ?? []);
        var trials = new List<SweepTrial>(SweepPlanner.Rebuild(job.Spec, planned, rounds.Sum(), carried?.Values));
        var outcomes = trials.Zip(carried?.Outcomes ?? []).ToDictionary(p => p.First.Index, p => p.Second);
        var units = new List<SweepUnit>();
        for (int round = 0, first = 0; round < rounds.Count; first += rounds[round++])
            units.AddRange(Units(job.JobId, trials[first..(first + rounds[round])], g => groups[g].Prepared, firstStack: units.Count(u => u.StackId is not null) + 1));
        var terminated = new HashSet<int>(carried?.Terminated ?? []);
        // A carried round trains on from its carried rung.
        int rung = carried?.Rung ?? 0;
        bool roundUnderWay = rounds.Count > 0;
        int trainings = 0;
        TrialSummary? latest = null;
        // Each round adds at least one trial, until the planned count.
        while (roundUnderWay || trials.Count < planned.Count)
        {
            IReadOnlyList<SweepTrial> round;
            if (roundUnderWay)
            {
                round = trials[^rounds[^1]..];
                roundUnderWay = false;
            }
            else
            {
                round = sweep.Method == SweepMethod.Bayesian
                    ? SweepPlanner.Propose(job.Spec, [.. trials.Select(t => new ObservedTrial(t.Index, t.Parameters,
                        Summary(t, outcomes[t.Index], terminated.Contains(t.Index), metric).Score))], sweep.Parallelism)
                    : trials.Count == 0 ? planned : [];
                if (round.Count == 0) break;
                trials.AddRange(round);
                rounds.Add(round.Count);
                rung = 0;
                foreach (var trial in round) outcomes[trial.Index] = new TrialOutcome(trial.JobId, 0, [], false, false, [], []);

                // One feature pass per group, the first time a trial of it comes; the groups are few (usually one), so they run
                // one after another.
                foreach (var first in round.Where(t => !groups.ContainsKey(t.FeatureGroup)).GroupBy(t => t.FeatureGroup).Select(g => g.First()))
                {
                    string featureRun = SweepPlanner.FeatureRunId(job.JobId, first.FeatureGroup);
                    // Controlled by the sweep: a cancel of the sweep stops its feature pass, whose running calls are the sweep's.
                    var featureJob = new FineTuneJob(featureRun, first.Spec with { JobId = featureRun }, ControlRun: job.JobId, CreatedAt: job.CreatedAt);
                    FineTuneOrchestrator.SetStatus(context, job, Status(RunStage.FetchingWeights, maxEpochs, null));
                    var fetchStarted = context.CurrentUtcDateTime;
                    var weights = await context.CallActivityAsync<WeightsRef>(ActivityNames.FetchPretrainedWeights, featureJob, FineTuneOrchestrator.Retry);
                    times.Add(new StageTime(Stages.Weights, (context.CurrentUtcDateTime - fetchStarted).TotalSeconds));
                    // The feature pass holds a slot of its own, freed before the trials ask for theirs.
                    var featurePass = await FineTuneOrchestrator.AdmittedAsync(context, featureJob, position => Queued(maxEpochs, null, position), () =>
                    {
                        FineTuneOrchestrator.SetStatus(context, job, Status(RunStage.PreparingModel, maxEpochs, null));
                        return FineTuneOrchestrator.PrepareAsync(context, new PrepareRequest(featureJob, weights),
                            pass => FineTuneOrchestrator.SetStatus(context, job, Status(RunStage.PreparingModel, maxEpochs, null) with { FeaturePass = pass }));
                    }, _ => true) ?? throw new InvalidOperationException("a feature pass does not continue as new");
                    times.AddRange(featurePass.Times);
                    groups[first.FeatureGroup] = (featureJob.JobId, weights, featurePass with { Times = [] });
                }
                units.AddRange(Units(job.JobId, round, g => groups[g].Prepared, firstStack: units.Count(u => u.StackId is not null) + 1));
            }

            var roundUnits = units.Where(u => u.Trials[0].Index > trials.Count - round.Count).ToList();
            var rungs = Rungs(sweep.EarlyTermination, round.Max(t => t.Spec.Training.Epochs));
            for (; rung < rungs.Count; rung++)
            {
                int untilEpoch = rungs[rung], fromEpoch = rung == 0 ? 0 : rungs[rung - 1];
                // The rung's trials: not terminated nor finished before it (one that finished in it, before the sweep continued
                // as new, has epochs past the rung before). A unit trains while one of them runs short of the rung.
                var live = round.Where(t => !terminated.Contains(t.Index) && (!outcomes[t.Index].Finished || EpochsRun(outcomes[t.Index]) > fromEpoch)).ToList();
                var due = roundUnits.Where(u => u.Trials.Any(t =>
                    !terminated.Contains(t.Index) && !outcomes[t.Index].Finished && EpochsRun(outcomes[t.Index]) < untilEpoch)).ToList();
                var running = new Dictionary<Task<IReadOnlyList<TrialOutcome>>, SweepUnit>();
                int Running() => running.Values.Sum(u => u.Trials.Count);
                foreach (var unit in due)
                {
                    if (running.Count == sweep.Parallelism) Collect(await Task.WhenAny(running.Keys));
                    if (trainings == job.ChunksPerGeneration)
                    {
                        // Those under way end first: the next generation starts none of them again and loses no result.
                        while (running.Count > 0) Collect(await Task.WhenAny(running.Keys));
                        context.ContinueAsNew(job with
                        {
                            CarriedSweep = new SweepCarried([.. rounds], rung, sweep.Method == SweepMethod.Bayesian ? [.. trials.Select(t => t.Parameters)] : null,
                                [.. trials.Select(t => outcomes[t.Index])], [.. terminated.Order()],
                                [.. groups.Select(g => new SweepGroup(g.Key, g.Value.Weights, g.Value.Prepared))], startedAt, Stages.Total(times)),
                        });
                        return null;
                    }
                    trainings++;
                    var unitGroup = groups[unit.Trials[0].FeatureGroup];
                    var task = unit.StackId is { } stackId
                        ? TrainStackAsync(context, StackJob(job, stackId, unit.Trials[0], unitGroup, context.CurrentUtcDateTime), unit.Trials, fromEpoch, untilEpoch,
                            terminated, times)
                        : TrainTrialAsync(context, job.JobId, unit.Trials[0], unitGroup, outcomes[unit.Trials[0].Index], rung, untilEpoch);
                    running.Add(task, unit);
                    FineTuneOrchestrator.SetStatus(context, job, Status(RunStage.Training, maxEpochs, Progress(planned.Count, trials, outcomes, terminated, Running(), metric, latest)));
                }
                while (running.Count > 0) Collect(await Task.WhenAny(running.Keys));

                void Collect(Task<IReadOnlyList<TrialOutcome>> done)
                {
                    var unit = running[done];
                    running.Remove(done);
                    foreach (var (trial, outcome) in unit.Trials.Zip(done.Result))
                    {
                        // A trial's workers over all its rungs; its times are the sweep's; of its epochs, those the sweep decides on.
                        var before = outcomes[trial.Index];
                        outcomes[trial.Index] = outcome with
                        {
                            History = Decisive(TrainingHistory.Merged(before.History, outcome.History), trial.Spec.StoppingMetric(), sweep.EarlyTermination),
                            Workers = [.. before.Workers.Union(outcome.Workers)],
                            Times = [],
                        };
                        times.AddRange(outcome.Times);
                        latest = Summary(trial, outcomes[trial.Index], terminated: false, metric);
                    }
                    FineTuneOrchestrator.SetStatus(context, job, Status(RunStage.Training, maxEpochs, Progress(planned.Count, trials, outcomes, terminated, Running(), metric, latest)));
                }

                if (sweep.EarlyTermination is { } termination && rung < rungs.Count - 1)
                    terminated.UnionWith(Terminate(termination.Policy, live, outcomes, untilEpoch, metric));
            }
        }

        // Best first; equal accuracies are told apart by the validation loss.
        var summaries = trials.Select(t => Summary(t, outcomes[t.Index], terminated.Contains(t.Index), metric))
            .OrderByDescending(s => s.Score ?? double.NegativeInfinity).ThenBy(s => s.ValidationLoss ?? double.PositiveInfinity).ThenBy(s => s.Index).ToList();
        var bestSummary = summaries.FirstOrDefault(s => s.BestEpoch is not null)
            ?? throw new InvalidOperationException("no trial finished an epoch");
        var best = trials.Single(t => t.Index == bestSummary.Index);
        var bestOutcome = outcomes[best.Index];
        var group = groups[best.FeatureGroup];
        var bestJob = TrialJob(job.JobId, best, group, bestOutcome.History, startedAt);
        var bestEpoch = TrainingHistory.Best(bestOutcome.History, best.Spec.StoppingMetric())!;
        var prepared = bestJob.Carried!.Prepared;
        long bestSequence = (bestEpoch.Epoch + 1L) * prepared.StepsPerEpoch;
        var progress = Progress(planned.Count, trials, outcomes, terminated, 0, metric);

        // Evaluating and publishing the best trial take a slot under the sweep's id.
        var bestUnit = units.Single(u => u.Trials.Contains(best));
        var (evaluation, published) = await FineTuneOrchestrator.AdmittedAsync(context, job, position => Queued(maxEpochs, progress, position), async () =>
        {
            FineTuneOrchestrator.SetStatus(context, job, Status(RunStage.Evaluating, maxEpochs, progress));
            if (bestUnit.StackId is { } stackId)
            {
                // A stacked trial's best epoch becomes a checkpoint of its own run, which evaluate and publish read.
                await context.CallActivityAsync<long>(ActivityNames.SaveTrialCheckpoint, new TrialCheckpointRequest(
                    StackJob(job, stackId, bestUnit.Trials[0], group, startedAt), best, bestUnit.Trials.ToList().IndexOf(best), bestSequence), FineTuneOrchestrator.Retry);
            }
            var evaluation = await context.CallActivityAsync<EvaluationSummary>(ActivityNames.Evaluate,
                new ModelRequest(bestJob, group.Weights, prepared, bestSequence), FineTuneOrchestrator.Retry);
            FineTuneOrchestrator.SetStatus(context, job, Status(RunStage.Publishing, maxEpochs, progress));
            var published = await context.CallActivityAsync<PublishedModel>(ActivityNames.Publish,
                new PublishRequest(bestJob, group.Weights, bestSequence, prepared, evaluation, bestEpoch.Epoch, History: null), FineTuneOrchestrator.Retry);
            return (evaluation, published);
        }, _ => true);
        var report = await context.CallActivityAsync<SweepSummary>(ActivityNames.WriteSweepReport,
            new SweepReportRequest(job.JobId, metric, summaries), FineTuneOrchestrator.Retry);
        FineTuneOrchestrator.SetStatus(context, job, Status(RunStage.Completed, maxEpochs, progress));
        times.AddRange(evaluation.Times);
        times.AddRange(published.Times);
        return new FineTuneResult(job.JobId, published, evaluation, EpochsRun(bestOutcome), bestEpoch.Epoch, bestOutcome.StoppedEarly, Stages.Total(times),
            report with { FeaturePasses = groups.Count });
    }

    /// <summary>
    /// What trains a sweep's trials: stacks (<see cref="TrainStackedTrials"/>) for the groups whose model stacks trials (cached
    /// features, a linear head), a group cut into as few stacks as hold at most <see cref="MaxTrialsPerStack"/> trials each
    /// (one stack is one worker's work: more stacks only pay for more activities unless more workers share them); one trial
    /// each (a <see cref="TrialOrchestrator"/>) for the others. Deterministic: the orchestrator replays it.
    /// </summary>
    /// <param name="firstStack">the number of the first stack (stacks are numbered across a sweep's rounds)</param>
    public static IReadOnlyList<SweepUnit> Units(string sweepId, IReadOnlyList<SweepTrial> trials, Func<int, PreparedSummary> prepared,
        int firstStack = 1)
    {
        var units = new List<SweepUnit>();
        foreach (var group in trials.GroupBy(t => t.FeatureGroup))
        {
            var members = group.ToList();
            if (!prepared(group.Key).StacksTrials)
            {
                units.AddRange(members.Select(t => new SweepUnit(null, [t])));
                continue;
            }
            int stacks = (members.Count + MaxTrialsPerStack - 1) / MaxTrialsPerStack;
            int size = (members.Count + stacks - 1) / stacks;
            foreach (var chunk in members.Chunk(size)) units.Add(new SweepUnit(SweepPlanner.StackId(sweepId, firstStack + units.Count(u => u.StackId is not null)), chunk));
        }
        return units;
    }

    /// <summary>The most trials one stack trains: a larger group is split so that several workers can share it.</summary>
    public const int MaxTrialsPerStack = 32;

    /// <summary>A stack's trials to the end of <paramref name="untilEpoch"/>, once the stack holds a slot (it counts as one run).</summary>
    private static async Task<IReadOnlyList<TrialOutcome>> TrainStackAsync(TaskOrchestrationContext context, FineTuneJob stack, IReadOnlyList<SweepTrial> trials,
        int fromEpoch, int untilEpoch, IReadOnlySet<int> terminated, List<StageTime> times)
    {
        var request = new StackRequest(stack, trials, untilEpoch, [.. trials.Select(t => t.Index).Where(terminated.Contains)], fromEpoch);
        var result = await FineTuneOrchestrator.AdmittedAsync(context, stack,
            position => new RunStatus(RunStage.Queued, 0, untilEpoch, 0, 0, null, null, null, null, null, QueuePosition: position),
            () => context.CallActivityAsync<StackResult>(ActivityNames.TrainStackedTrials, request, FineTuneOrchestrator.Retry), _ => true)
            ?? throw new InvalidOperationException("a stack does not continue as new");
        times.AddRange(result.Times);
        return result.Trials;
    }

    /// <summary>One trial that cannot stack, to the end of <paramref name="untilEpoch"/>, as a sub-orchestration of its own.</summary>
    private static async Task<IReadOnlyList<TrialOutcome>> TrainTrialAsync(TaskOrchestrationContext context, string sweepId, SweepTrial trial,
        (string RunId, WeightsRef Weights, PreparedSummary Prepared) group, TrialOutcome outcome, int rung, int untilEpoch)
    {
        var request = new TrialRequest(TrialJob(sweepId, trial, group, outcome.History, context.CurrentUtcDateTime), outcome.GlobalStep, untilEpoch);
        return [await context.CallSubOrchestratorAsync<TrialOutcome>(TrialOrchestrator.Name, request,
            new SubOrchestrationOptions { InstanceId = $"{trial.JobId}:r{rung + 1}" })];
    }

    /// <summary>
    /// A stack as a run: its group's weights, prepared model and feature run, stopped by a cancel of the sweep, dated by it
    /// (the sweep's status, which waiting for the stack's slot writes, keeps the sweep's date).
    /// </summary>
    private static FineTuneJob StackJob(FineTuneJob sweep, string stackId, SweepTrial first, (string RunId, WeightsRef Weights, PreparedSummary Prepared) group,
        DateTime startedAt) =>
        new(stackId, first.Spec with { JobId = stackId }, Carried: new CarriedState(group.Weights, group.Prepared, 0, [], startedAt, 0, []),
            DataRun: group.RunId, ControlRun: sweep.JobId, CreatedAt: sweep.CreatedAt);

    /// <summary>The epochs after which early termination compares trials: grace, 2·grace, 4·grace, …, then the last epoch.</summary>
    public static IReadOnlyList<int> Rungs(EarlyTerminationSpec? termination, int epochs)
    {
        var rungs = new List<int>();
        if (termination is not null)
            for (int rung = termination.GraceEpochs; rung < epochs; rung *= 2) rungs.Add(rung);
        rungs.Add(epochs);
        return rungs;
    }

    /// <summary>The epochs a trial has run: its last one's number, as its outcome keeps only some (<see cref="Decisive"/>).</summary>
    private static int EpochsRun(TrialOutcome outcome) => outcome.History is [.., var last] ? last.Epoch + 1 : 0;

    /// <summary>
    /// Of a trial's epochs, those the sweep decides on, in order: its best (by its own stopping metric), its last, and each
    /// that ends a rung of early termination. What the sweep holds and carries to its next generation is so bounded by the
    /// trials, not by their epochs; the best stays the best of the whole history (the earliest on ties, and none before it is
    /// as good), the last tells how many it ran. Its whole history is its metrics' (<see cref="PublishRequest.History"/>).
    /// </summary>
    private static IReadOnlyList<EpochMetrics> Decisive(IReadOnlyList<EpochMetrics> history, StoppingMetric metric, EarlyTerminationSpec? termination)
    {
        if (history.Count == 0) return history;
        int best = TrainingHistory.Best(history, metric)!.Epoch, last = history[^1].Epoch;
        return [.. history.Where(e => e.Epoch == best || e.Epoch == last || EndsRung(termination, e.Epoch + 1))];
    }

    /// <summary>
    /// Whether a rung of early termination ends after <paramref name="epochs"/> epochs, in a sweep of any length: one of the
    /// <see cref="Rungs"/> before the last (which is every trial's own last epoch) of a longer sweep.
    /// </summary>
    private static bool EndsRung(EarlyTerminationSpec? termination, int epochs) =>
        termination is not null && Rungs(termination, epochs + 1).Contains(epochs);

    /// <summary>
    /// The trials to stop at a rung, among those still running: below the median of every trial's metric at that epoch
    /// (median), or outside the better half (halving). Decided here, from recorded results, so replays agree.
    /// </summary>
    private static IEnumerable<int> Terminate(TerminationPolicy policy, IReadOnlyList<SweepTrial> live, Dictionary<int, TrialOutcome> outcomes, int epoch,
        StoppingMetric metric)
    {
        double? At(SweepTrial t) => outcomes[t.Index].History.FirstOrDefault(e => e.Epoch == epoch - 1) is { } reached ? TrainingHistory.Score(reached, metric) : null;
        var scored = live.Where(t => At(t) is not null).Select(t => (Trial: t, Score: At(t)!.Value)).ToList();
        var running = scored.Where(s => !outcomes[s.Trial.Index].Finished).ToList();
        if (scored.Count < 2 || running.Count == 0) return [];
        if (policy == TerminationPolicy.Median)
        {
            var sorted = scored.Select(s => s.Score).Order().ToArray();
            double median = sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
            return running.Where(s => s.Score < median).Select(s => s.Trial.Index);
        }
        int keep = (scored.Count + 1) / 2;
        var kept = scored.OrderByDescending(s => s.Score).ThenBy(s => s.Trial.Index).Take(keep).Select(s => s.Trial.Index).ToHashSet();
        return running.Where(s => !kept.Contains(s.Trial.Index)).Select(s => s.Trial.Index);
    }

    /// <summary>
    /// A trial as a run: its group's weights and prepared model (steps per epoch for its batch size), reading the group's
    /// features, stopped by a cancel of the sweep.
    /// </summary>
    private static FineTuneJob TrialJob(string sweepId, SweepTrial trial, (string RunId, WeightsRef Weights, PreparedSummary Prepared) group, IReadOnlyList<EpochMetrics> history,
        DateTime startedAt)
    {
        var prepared = group.Prepared with { StepsPerEpoch = Trainer.StepsPerEpochFor(group.Prepared.TrainImages, trial.Spec.Training.BatchSize) };
        return new FineTuneJob(trial.JobId, trial.Spec, Carried: new CarriedState(group.Weights, prepared, 0, history, startedAt, 0, []), DataRun: group.RunId,
            ControlRun: sweepId);
    }

    private static TrialSummary Summary(SweepTrial trial, TrialOutcome outcome, bool terminated, StoppingMetric metric)
    {
        var best = TrainingHistory.Best(outcome.History, trial.Spec.StoppingMetric());
        string state = terminated ? TrialStates.Terminated : outcome.StoppedEarly ? TrialStates.StoppedEarly : outcome.Finished ? TrialStates.Completed : TrialStates.NotRun;
        return new TrialSummary(trial.Index, trial.JobId, trial.Parameters, state, EpochsRun(outcome), best?.Epoch,
            best is null ? null : TrainingHistory.Score(best, metric), best?.ValidationLoss, best?.ValidationAccuracy, outcome.Workers);
    }

    /// <param name="planned">the sweep's trials in all (a bayesian sweep's are proposed round by round)</param>
    private static SweepProgress Progress(int planned, IReadOnlyList<SweepTrial> trials, Dictionary<int, TrialOutcome> outcomes, HashSet<int> terminated, int running,
        StoppingMetric metric, TrialSummary? latest = null)
    {
        // Best first; equal accuracies are told apart by the validation loss.
        var summaries = trials.Select(t => Summary(t, outcomes[t.Index], terminated.Contains(t.Index), metric)).ToList();
        var best = summaries.Where(s => s.BestEpoch is not null).OrderByDescending(s => s.Score).ThenBy(s => s.ValidationLoss).ThenBy(s => s.Index).FirstOrDefault();
        int finished = trials.Count(t => outcomes[t.Index].Finished || terminated.Contains(t.Index));
        return new SweepProgress(planned, finished, running, best?.JobId, best?.ValidationLoss, best?.ValidationAccuracy, latest, [.. terminated.Order()]);
    }

    private static RunStatus Queued(int epochs, SweepProgress? progress, int position) => Status(RunStage.Queued, epochs, progress) with { QueuePosition = position };

    private static RunStatus Status(RunStage stage, int epochs, SweepProgress? progress) =>
        new(stage, 0, epochs, 0, 0, null, progress?.BestValidationLoss, progress?.BestValidationAccuracy, null, null, progress);
}
