using System.Globalization;
using System.Text;
using System.Text.Json;
using FineTune.Core;
using FineTune.Storage;
using FineTune.Workflow.Jobs;
using FineTune.Workflow.Services;
using Microsoft.Extensions.Options;

namespace FineTune.Workflow.Orchestration;

/// <summary>
/// The spec a job id is bound to (<see cref="RunLayout.Spec"/>), with its hash; <see cref="Sweep"/>: the sweep whose internal
/// run (a feature pass) this is, null for a run users started.
/// </summary>
public sealed record BoundSpec(string Sha256, JobSpec Spec, string? Sweep = null)
{
    /// <summary>The spec the id is bound to; null for an id never used (or purged).</summary>
    public static async Task<BoundSpec?> ReadAsync(IArtifactStore store, string jobId, CancellationToken cancellationToken)
    {
        try
        {
            await using var stream = await store.OpenReadAsync(new RunLayout(jobId).Spec, cancellationToken);
            return await JsonSerializer.DeserializeAsync<BoundSpec>(stream, WireJson.Options, cancellationToken);
        }
        catch (ArtifactNotFoundException)
        {
            return null;
        }
    }
}

/// <summary>
/// What purging a run removed; <see cref="KeptPublished"/>: its published model was left in place; <see cref="UploadDeleted"/>:
/// the uploaded dataset it was the last run to use.
/// </summary>
public sealed record PurgeOutcome(string JobId, bool Purged, string? Refusal, int ArtifactsDeleted, bool KeptPublished, string? UploadDeleted = null);

/// <summary>
/// A run's life beyond its orchestration, kept in the artifact store so every backend and every worker sees it: the
/// spec its id is bound to, a requested cancel, how often each chunk was started; and restart and purge, which also remove
/// what the run left on this worker (<see cref="RunScratch"/>) and the dataset it uploaded once no other run uses it.
/// </summary>
public sealed class RunControl(IArtifactStore store, UserUploads uploads, RunScratch scratch, RunSlots slots, IOptions<WorkflowOptions> options)
{
    /// <summary>How this host runs the workflow: what a submitted job is admitted against.</summary>
    public WorkflowOptions Options => options.Value;

    /// <summary>
    /// Binds <paramref name="jobId"/> to <paramref name="spec"/> on first use (a create-only write); later uses must
    /// bring the same spec. Throws <see cref="SpecConflictException"/>, naming both hashes, when they do not.
    /// </summary>
    /// <param name="sweep">the sweep whose internal run this is (<see cref="BoundSpec.Sweep"/>)</param>
    public async Task BindSpecAsync(string jobId, JobSpec spec, CancellationToken cancellationToken, string? sweep = null)
    {
        string sha256 = JobSpecReader.Hash(spec);
        string name = new RunLayout(jobId).Spec;
        try
        {
            byte[] json = JsonSerializer.SerializeToUtf8Bytes(new BoundSpec(sha256, spec with { JobId = jobId }, sweep), WireJson.Options);
            await store.WriteAsync(name, new MemoryStream(json, writable: false), WriteMode.CreateNew, cancellationToken);
        }
        catch (ArtifactExistsException)
        {
            var bound = await BoundSpecAsync(jobId, cancellationToken);
            if (bound is not null && bound.Sha256 != sha256) throw new SpecConflictException(jobId, bound.Sha256, sha256);
        }
    }

    /// <summary>The spec the id is bound to; null for an id never used (or purged).</summary>
    public Task<BoundSpec?> BoundSpecAsync(string jobId, CancellationToken cancellationToken) => BoundSpec.ReadAsync(store, jobId, cancellationToken);

    /// <summary>
    /// Cancels a run: its orchestration ends at once, and its running chunk, on whichever worker, stops at its next
    /// step boundary (within <see cref="WorkflowOptions.CancelPollInterval"/> and one step) with a checkpoint there.
    /// Refused unless the run is live.
    /// </summary>
    public async Task<string?> CancelAsync(IRunScheduler scheduler, string jobId, CancellationToken cancellationToken)
    {
        if (await scheduler.HolderStatusAsync(jobId, cancellationToken) is not ({ } status and not "Completed"))
            return $"run '{jobId}' is not running";
        await RequestCancelAsync(jobId, cancellationToken);
        await scheduler.TerminateAsync(jobId, "cancelled", cancellationToken);
        // Its slot goes to the next queued run now, not when the chunk stops: the chunk ends within a step.
        LeaveSlots(jobId, (await BoundSpecAsync(jobId, cancellationToken))?.Spec);
        return null;
    }

    /// <summary>Asks the run's running chunk, on whichever worker, to stop at its next step and checkpoint there.</summary>
    public Task RequestCancelAsync(string jobId, CancellationToken cancellationToken) =>
        store.WriteAsync(new RunLayout(jobId).CancelRequest, new MemoryStream(Encoding.UTF8.GetBytes(DateTimeOffset.UtcNow.ToString("O", CultureInfo.InvariantCulture))),
            WriteMode.Overwrite, cancellationToken);

    public Task<bool> IsCancelRequestedAsync(string jobId, CancellationToken cancellationToken) =>
        store.ExistsAsync(new RunLayout(jobId).CancelRequest, cancellationToken);

    /// <summary>
    /// Cancels <paramref name="stop"/> once a cancel of the job's run (a trial's sweep) is requested, polling the store every
    /// <see cref="WorkflowOptions.CancelPollInterval"/> until disposed, and keeps the job's slot (<see cref="RunSlots"/>)
    /// marked in use meanwhile, and its running marker (<see cref="RunLayout.Running"/>) renewed until disposed, when it
    /// is removed. A failed poll (storage away) is retried at the next one: it must not end the chunk.
    /// </summary>
    public IAsyncDisposable WatchForCancel(FineTuneJob job, CancellationTokenSource stop)
    {
        string marker = new RunLayout(job.ControlRunId).RunningOf(Guid.NewGuid().ToString("N"));
        var done = new CancellationTokenSource();
        var watching = Task.Run(async () =>
        {
            while (!done.IsCancellationRequested)
            {
                try
                {
                    slots.Touch(job.JobId);
                    await store.WriteAsync(marker, new MemoryStream(Encoding.UTF8.GetBytes(job.JobId)), WriteMode.Overwrite, done.Token);
                    if (await IsCancelRequestedAsync(job.ControlRunId, done.Token))
                    {
                        await stop.CancelAsync();
                        return;
                    }
                    await Task.Delay(options.Value.CancelPollInterval, done.Token);
                }
                catch (OperationCanceledException) when (done.IsCancellationRequested)
                {
                    return;
                }
                catch (Exception) when (!done.IsCancellationRequested)
                {
                    // Storage away (the SDK's retries spent: an AggregateException) or any other failed poll.
                    await Task.Delay(options.Value.CancelPollInterval, CancellationToken.None);
                }
            }
        });
        return new Watch(done, watching, async () =>
        {
            await store.WriteAsync(new RunLayout(job.ControlRunId).LastCallEnded, new MemoryStream(Encoding.UTF8.GetBytes(job.JobId)), WriteMode.Overwrite,
                CancellationToken.None);
            await store.DeleteAsync(marker, CancellationToken.None);
        });
    }

    /// <summary>
    /// Runs an activity's <paramref name="work"/> with a token cancelled when this worker stops or a cancel of the run is
    /// requested (<see cref="WatchForCancel"/>), so a cancel stops a weights copy, a dataset copy, a feature pass, an
    /// evaluation or a publish as it stops training. Work that a requested cancel stops ends in <see cref="RunCancelledException"/>;
    /// work that fills the disk, in <see cref="WorkerDiskFullException"/>.
    /// </summary>
    public async Task<T> UntilCancelledAsync<T>(FineTuneJob job, Func<CancellationToken, Task<T>> work, CancellationToken stopping)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(stopping);
        await using (WatchForCancel(job, stop))
        {
            try
            {
                return await work(stop.Token);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested && !stopping.IsCancellationRequested)
            {
                throw new RunCancelledException(job.JobId);
            }
            catch (Exception e) when (WorkerDiskFullException.Is(e))
            {
                throw new WorkerDiskFullException(job.JobId);
            }
        }
    }

    /// <summary>Counts one more start of the chunk from <paramref name="fromStep"/> and returns how many there have been.</summary>
    public async Task<int> CountAttemptAsync(string jobId, long fromStep, CancellationToken cancellationToken)
    {
        string name = new RunLayout(jobId).AttemptsOf(fromStep);
        int attempts = 0;
        try
        {
            await using var stream = await store.OpenReadAsync(name, cancellationToken);
            attempts = int.Parse(await new StreamReader(stream).ReadToEndAsync(cancellationToken), CultureInfo.InvariantCulture);
        }
        catch (ArtifactNotFoundException)
        {
        }
        attempts++;
        await store.WriteAsync(name, new MemoryStream(Encoding.UTF8.GetBytes(attempts.ToString(CultureInfo.InvariantCulture))), WriteMode.Overwrite, cancellationToken);
        return attempts;
    }

    /// <summary>
    /// Starts a failed or cancelled run again under its id with its bound spec: it continues from its last
    /// checkpoint (the orchestration finds every finished chunk already stored). Refused while the run is live,
    /// once it has published, or when the id was never used.
    /// </summary>
    public async Task<StartOutcome> RestartAsync(IRunScheduler scheduler, string jobId, CancellationToken cancellationToken)
    {
        if (await scheduler.HolderStatusAsync(jobId, cancellationToken) is { } status)
            return new StartOutcome(jobId, false, $"run '{jobId}' is {status}: only a failed or cancelled run restarts");
        var layout = new RunLayout(jobId);
        if (await store.ExistsAsync(layout.ModelCard, cancellationToken))
            return new StartOutcome(jobId, false, $"run '{jobId}' has already published its model");
        var bound = await BoundSpecAsync(jobId, cancellationToken);
        if (bound is null) return new StartOutcome(jobId, false, $"run '{jobId}' does not exist (no spec is bound to it)");
        if (await ClearControlAsync(layout, cancellationToken) is { } stopping) return new StartOutcome(jobId, false, stopping);
        // The restart reads the dataset afresh: a user who fixed it is heard, and no copy or scan of the failed run is reused.
        ReleaseScratch(jobId, bound.Spec);
        var job = new FineTuneJob(jobId, bound.Spec);
        await scheduler.ScheduleAsync(job, cancellationToken);
        WorkflowMetrics.RunStarted(WorkflowMetrics.KindOf(RunStarter.OrchestratorOf(job)));
        return new StartOutcome(jobId, true, null);
    }

    /// <summary>
    /// Removes a run that is not live: its durable history and its artifacts. The published model (with the spec its
    /// id stays bound to) is kept unless <paramref name="includePublished"/>.
    /// </summary>
    public async Task<PurgeOutcome> PurgeAsync(IRunScheduler scheduler, string jobId, bool includePublished, CancellationToken cancellationToken)
    {
        if (await scheduler.HolderStatusAsync(jobId, cancellationToken) is { } status and not "Completed")
            return new PurgeOutcome(jobId, false, $"run '{jobId}' is {status}: cancel it first", 0, false);
        await scheduler.PurgeHistoryAsync(jobId, cancellationToken);
        var layout = new RunLayout(jobId);
        var bound = await BoundSpecAsync(jobId, cancellationToken);
        bool keep = !includePublished && await store.ExistsAsync(layout.ModelCard, cancellationToken);
        var names = new List<string>();
        await foreach (var item in store.ListAsync(layout.Root, cancellationToken))
        {
            if (keep && (item.Name.StartsWith(layout.Published, StringComparison.Ordinal) || item.Name == layout.Spec)) continue;
            names.Add(item.Name);
        }
        // The checkpoints' manifests first: a purge cut short leaves uncommitted folders, never a checkpoint missing parts.
        foreach (var name in names.OrderBy(n => n.EndsWith("/manifest.json", StringComparison.Ordinal) ? 0 : 1))
            await store.DeleteAsync(name, cancellationToken);
        ReleaseScratch(jobId, bound?.Spec);
        // A spec written by an older version, or by hand, may hold no spec or no dataset at all.
        string? upload = bound?.Spec is { } spec ? await DeleteUnusedUploadAsync(jobId, spec, cancellationToken) : null;
        return new PurgeOutcome(jobId, true, null, names.Count, keep, upload);
    }

    /// <summary>Removes what the run (and a sweep's feature runs) left in this worker's scratch: for a run that has ended.</summary>
    public async Task ReleaseScratchAsync(string jobId, CancellationToken cancellationToken) =>
        ReleaseScratch(jobId, (await BoundSpecAsync(jobId, cancellationToken))?.Spec);

    // A run that has ended or been purged: what it held on this worker, its scratch and its slots, is freed (a sweep's
    // feature runs' too).
    private void ReleaseScratch(string jobId, JobSpec? spec)
    {
        scratch.Release(jobId);
        if (spec?.Sweep is not null)
            foreach (var run in SweepOrchestrator.FeatureRuns(new FineTuneJob(jobId, spec))) scratch.Release(run);
        LeaveSlots(jobId, spec);
    }

    // The run's slot on this worker, or its place in the queue, and a sweep's trials' and feature runs'.
    private void LeaveSlots(string jobId, JobSpec? spec)
    {
        slots.Leave(jobId);
        if (spec?.Sweep is null) return;
        foreach (var run in SweepOrchestrator.FeatureRuns(new FineTuneJob(jobId, spec))) slots.Leave(run);
        var trials = SweepPlanner.Plan(spec);
        foreach (var trial in trials) slots.Leave(trial.JobId);
        // Stacks are numbered from 1, never more than the trials.
        for (int stack = 1; stack <= trials.Count; stack++) slots.Leave(SweepPlanner.StackId(jobId, stack));
    }

    /// <summary>
    /// The dataset the run uploaded (<see cref="ArtifactNames.UploadedDataset"/>, named by its hash), deleted when no other run's
    /// bound spec names it; null when it is kept or the run's dataset was no upload. Only uploads the service named are
    /// counted: a user's own blobs are theirs to remove.
    /// </summary>
    private async Task<string?> DeleteUnusedUploadAsync(string jobId, JobSpec spec, CancellationToken cancellationToken)
    {
        if (spec.Dataset?.Location is not { } location || !BlobReference.IsBlob(location)) return null;
        string name = BlobReference.Name(location);
        if (!ArtifactNames.IsUploadedDataset(name)) return null;
        await foreach (var item in store.ListAsync(RunLayout.RunsPrefix, cancellationToken))
        {
            if (RunLayout.JobIdOf(item.Name) is not { } other || other == jobId || item.Name != new RunLayout(other).Spec) continue;
            if ((await BoundSpecAsync(other, cancellationToken))?.Spec?.Dataset?.Location == location) return null;
        }
        await uploads.Store.DeleteAsync(name, cancellationToken);
        return name;
    }

    /// <summary>
    /// Purges (published models kept) every run untouched for <see cref="WorkflowOptions.RetentionDays"/>; nothing
    /// when no retention is set. Returns the purged ids.
    /// </summary>
    public async Task<IReadOnlyList<string>> PurgeExpiredAsync(IRunScheduler scheduler, DateTimeOffset now, CancellationToken cancellationToken)
    {
        if (options.Value.RetentionDays is not { } days) return [];
        var newest = new Dictionary<string, DateTimeOffset>(StringComparer.Ordinal);
        await foreach (var item in store.ListAsync(RunLayout.RunsPrefix, cancellationToken))
        {
            if (RunLayout.JobIdOf(item.Name) is not { } id) continue;
            // Published files stay after a purge: they say nothing about whether the run was used since.
            if (item.Name.StartsWith(new RunLayout(id).Published, StringComparison.Ordinal) || item.Name == new RunLayout(id).Spec) continue;
            newest[id] = newest.TryGetValue(id, out var seen) && seen > item.LastModified ? seen : item.LastModified;
        }
        var purged = new List<string>();
        foreach (var (id, modified) in newest.Where(r => r.Value < now.AddDays(-days)))
        {
            if ((await PurgeAsync(scheduler, id, includePublished: false, cancellationToken)).Purged) purged.Add(id);
        }
        return purged;
    }

    /// <summary>
    /// Forgets a past cancel and the chunk attempts counted before, so a restarted run starts afresh; first waits, up to
    /// <see cref="WorkflowOptions.StopWaitLimit"/>, for every call of the earlier attempt still running to stop, the cancel
    /// requested meanwhile. Returns why the run cannot start yet when one has not stopped; null once cleared.
    /// </summary>
    /// <remarks>
    /// A terminated orchestration's running chunk sees the cancel only at its next poll: forgotten before then, it trains
    /// on beside the new attempt, on the same checkpoints. And the in-process sidecar (the in-memory backend) keys a running
    /// activity by instance id and task id alone: a restarted run's call that meets a running call of the old attempt under
    /// the same task id is never answered ("Activity not found"), and the run waits for it for good.
    /// </remarks>
    internal async Task<string?> ClearControlAsync(RunLayout layout, CancellationToken cancellationToken)
    {
        var deadline = DateTimeOffset.UtcNow + options.Value.StopWaitLimit;
        for (bool requested = false; await IsAnyCallRunningAsync(layout.JobId, cancellationToken); requested = true)
        {
            if (!requested) await RequestCancelAsync(layout.JobId, cancellationToken);
            if (DateTimeOffset.UtcNow >= deadline)
                return $"run '{layout.JobId}' is still stopping: a call of its cancelled attempt has run on for {options.Value.StopWaitLimit}; try again later";
            await Task.Delay(options.Value.CancelPollInterval, cancellationToken);
        }
        await store.DeleteAsync(layout.CancelRequest, cancellationToken);
        // What is left under Running or Attempts is a dead worker's, or the ended attempt's.
        foreach (string prefix in new[] { layout.Running, layout.Attempts })
        {
            await foreach (var item in store.ListAsync(prefix, cancellationToken))
                await store.DeleteAsync(item.Name, cancellationToken);
        }
        return null;
    }

    /// <summary>
    /// Whether a call of the run is running on some worker, whichever process: its running marker was renewed within a few
    /// polls. An older one is a dead worker's (killed mid-chunk): a run resumed after a crash waits seconds for it, not StopWaitLimit.
    /// </summary>
    public async Task<bool> IsAnyCallRunningAsync(string jobId, CancellationToken cancellationToken)
    {
        var since = DateTimeOffset.UtcNow - MarkerLifetime;
        await foreach (var item in store.ListAsync(new RunLayout(jobId).Running, cancellationToken))
            if (item.LastModified > since) return true;
        return false;
    }

    /// <summary>
    /// Whether the run is running, as another process sees it from the store: a call of it runs, or one ended so recently that
    /// the next one may not have started yet (an orchestration schedules its next call within a poll or two). A run that has
    /// stopped reads running for that long after its last call.
    /// </summary>
    public async Task<bool> IsRunningAsync(string jobId, CancellationToken cancellationToken)
    {
        if (await IsAnyCallRunningAsync(jobId, cancellationToken)) return true;
        string ended = new RunLayout(jobId).LastCallEnded;
        await foreach (var item in store.ListAsync(ended, cancellationToken))
            if (item.Name == ended && item.LastModified > DateTimeOffset.UtcNow - MarkerLifetime) return true;
        return false;
    }

    // A marker renewed every poll is a live call's for a few polls after its last renewal.
    private TimeSpan MarkerLifetime => TimeSpan.FromSeconds(Math.Max(10, 5 * options.Value.CancelPollInterval.TotalSeconds));

    private sealed class Watch(CancellationTokenSource done, Task watching, Func<Task> removeMarker) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            await done.CancelAsync();
            await watching;
            done.Dispose();
            try
            {
                await removeMarker();
            }
            catch (Exception)
            {
                // Storage away: the marker, no longer renewed, is ignored once a few polls old; the call's outcome stands.
            }
        }
    }
}
