using System.Text.Json;
using FineTune.Core.Engine;
using FineTune.Core.Training;
using FineTune.Storage.Checkpoints;
using FineTune.Workflow.Jobs;
using FineTune.Workflow.Orchestration;
using FineTune.Workflow.Services;
using Microsoft.DurableTask;
using Microsoft.Extensions.Options;

namespace FineTune.Workflow.Activities;

/// <summary>
/// A sweep's trials of one feature group trained together (<see cref="FineTuneEngine.TrainStackedTrials"/>) up to a rung, from the
/// stack's last checkpoint, ending with a checkpoint of the whole stack (one part, sequence = the rung's epoch). Idempotent:
/// a call whose rung is already checkpointed returns what that checkpoint holds. A cancel of the sweep stops it within a
/// step; the epoch under way is dropped and redone on restart, so the result is the same.
/// </summary>
[DurableTask(ActivityNames.TrainStackedTrials)]
public sealed class TrainStackedTrials(WorkerFiles worker, FineTuneEngine engine, CheckpointStore checkpoints, RunControl runs, IOptions<WorkflowOptions> options,
    WorkerStopping stopping, RunMetrics metrics, RunSlots slots) : TaskActivity<StackRequest, StackResult>
{
    /// <summary>A rung's epochs are checkpointed at least this often (and at its end).</summary>
    private static readonly TimeSpan CheckpointInterval = TimeSpan.FromSeconds(10);

    /// <summary>The checkpoint part holding every member's tensors.</summary>
    public const string StackPart = "stack.safetensors";

    public override async Task<StackResult> RunAsync(TaskActivityContext context, StackRequest request)
    {
        try
        {
            return await TrainAsync(request);
        }
        catch (Exception e) when (WorkerDiskFullException.Is(e))
        {
            throw new WorkerDiskFullException(request.Stack.JobId);
        }
        finally
        {
            // A stack's rung is its whole work: its slot frees here, on the worker that most likely holds it, even when the
            // orchestration's LeaveRun runs on another worker of the hub.
            slots.Leave(request.Stack.JobId);
        }
    }

    /// <summary>The stack's latest checkpoint, or null before the first.</summary>
    internal static async Task<(long Sequence, StackState State)?> LatestAsync(CheckpointStore checkpoints, string stackId, CancellationToken cancellationToken)
    {
        var latest = await checkpoints.LoadLatestAsync(stackId, cancellationToken);
        if (latest is null) return null;
        var members = latest.Manifest.Metadata.Deserialize<List<StackMemberProgress>>(WireJson.Options)
            ?? throw new InvalidDataException($"stack {stackId}'s checkpoint {latest.Manifest.Sequence} holds no members");
        return (latest.Manifest.Sequence, new StackState(latest.Parts[StackPart], members));
    }

    private async Task<StackResult> TrainAsync(StackRequest request)
    {
        var token = stopping.Token;
        var job = request.Stack;
        var carried = job.Carried ?? throw new ArgumentException("a stack starts from its sweep's weights and prepared model", nameof(request));
        var latest = await LatestAsync(checkpoints, job.JobId, token);
        if (latest is { } resumed)
        {
            // A call killed between a checkpoint and its trials' records left them short, and a trial that trains no more
            // from here (stopped, finished, terminated) is never recorded again: each is written whole from the checkpoint.
            for (int member = 0; member < request.Trials.Count; member++)
                await metrics.WriteAsync(request.Trials[member].JobId, request.Trials[member].Spec.Training.Epochs, resumed.State.Members[member].History, token);
            if (resumed.Sequence >= request.UntilEpoch) return Result(request, resumed.State, []);
        }

        // Counted in the store before any work: a worker killed for memory throws nothing, it just never finishes.
        int attempts = await runs.CountAttemptAsync(job.JobId, request.UntilEpoch, token);
        if (attempts > options.Value.MaxChunkAttempts) throw new ChunkAttemptsExhaustedException(job.JobId, request.UntilEpoch, attempts - 1);

        var clock = new StageClock();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(token);
        bool completed;
        StackState? saved = latest?.State, reached;
        await using (runs.WatchForCancel(job, stop))
        {
            ActivityInputs inputs;
            try
            {
                inputs = await worker.For(job).LoadAsync(carried.Weights, carried.Prepared, stop.Token, clock);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested && !token.IsCancellationRequested)
            {
                throw new RunCancelledException(job.JobId);
            }
            var features = inputs.Features ?? throw new InvalidOperationException($"stack {job.JobId}: its feature run holds no features");
            var recipes = request.Trials.Select(t => t.Spec.ToRecipe(inputs.Recipe.WeightsPath)).ToList();
            var excluded = request.Trials.Select((t, member) => (t, member)).Where(m => request.Excluded.Contains(m.t.Index)).Select(m => m.member).ToHashSet();
            var state = latest?.State;
            int stateEpoch = (int)(latest?.Sequence ?? 0), savedEpoch = stateEpoch;
            var sinceSave = System.Diagnostics.Stopwatch.StartNew();
            completed = true;
            using var session = engine.OpenStack(recipes, inputs.Dataset, features, state);
            // Epoch by epoch, checkpointed at the rung and every CheckpointInterval on the way: a long rung killed midway
            // loses little, and resuming from an epoch's end gives the same result.
            for (int until = stateEpoch + 1; until <= request.UntilEpoch; until++)
            {
                completed = clock.Time(Stages.Training, () => session.Train(until, excluded, () => stop.IsCancellationRequested, CancellationToken.None));
                if (!completed) break;
                stateEpoch = until;
                if (until < request.UntilEpoch && sinceSave.Elapsed < CheckpointInterval) continue;
                state = session.State();
                await SaveAsync(request, stateEpoch, state, saved, clock);
                (saved, savedEpoch) = (state, stateEpoch);
                sinceSave.Restart();
            }
            // A cancel keeps the epochs finished since the last checkpoint, as a cancelled chunk keeps its steps.
            if (!completed && stateEpoch > savedEpoch)
            {
                state = session.State();
                await SaveAsync(request, stateEpoch, state, saved, clock);
            }
            reached = state;
        }
        token.ThrowIfCancellationRequested();
        WorkflowMetrics.StagesTimed(clock.Times);
        if (!completed || stop.IsCancellationRequested) throw new RunCancelledException(job.JobId);
        return Result(request, reached!, clock.Times);
    }

    /// <summary>
    /// The stack's checkpoint at <paramref name="epoch"/>, and each trial's epochs since <paramref name="previous"/> in its
    /// metrics (its curves). Not the stopping token: what was reached is saved even while the worker shuts down.
    /// </summary>
    private async Task SaveAsync(StackRequest request, int epoch, StackState state, StackState? previous, StageClock clock)
    {
        string stackId = request.Stack.JobId;
        await clock.TimeAsync(Stages.Checkpoints, async () =>
        {
            await checkpoints.SaveAsync(stackId, epoch, new Dictionary<string, byte[]> { [StackPart] = state.Tensors },
                JsonSerializer.SerializeToElement(state.Members, WireJson.Options), CancellationToken.None);
            await checkpoints.PruneAsync(stackId, options.Value.CheckpointsToKeep, null, epoch, CancellationToken.None);
        });
        for (int member = 0; member < request.Trials.Count; member++)
        {
            var trial = request.Trials[member];
            await metrics.RecordAsync(trial.JobId, request.Stack.ControlRun, trial.Spec.Training.Epochs, state.Members[member].History, previous?.Members[member].History.Count ?? 0,
                CancellationToken.None);
        }
    }

    private static StackResult Result(StackRequest request, StackState state, IReadOnlyList<StageTime> times)
    {
        var outcomes = request.Trials.Select((trial, member) =>
        {
            var progress = state.Members[member];
            var training = trial.Spec.Training;
            int perEpoch = Trainer.StepsPerEpochFor(request.Stack.Carried!.Prepared.TrainImages, training.BatchSize);
            bool finished = progress.StoppedEarly || progress.Epoch >= training.Epochs;
            return new TrialOutcome(trial.JobId, (long)progress.Epoch * perEpoch, [.. progress.History.Where(e => e.Epoch >= request.FromEpoch)], finished, progress.StoppedEarly,
                WorkerIdentity.Current is { } current ? [current] : [], []);
        }).ToList();
        return new StackResult(outcomes, times);
    }
}
