using FineTune.Workflow.Jobs;
using Microsoft.Extensions.Options;

namespace FineTune.Workflow.Services;

/// <summary>Whether a run may start its work on this worker now; when not, its place in the queue (1: next).</summary>
public sealed record Admission(bool Admitted, int Position, TimeSpan RetryAfter);

/// <summary>
/// Admission control on this worker: at most <see cref="WorkflowOptions.MaxConcurrentRuns"/> runs (each stack of a sweep's trials, or trial that cannot stack,
/// is one) hold a slot at once, and their estimated peak memory (<see cref="JobMemory"/>) together stays within the
/// worker's budget; the others wait, first come first served, and their status says queued. A run holds its slot from
/// admission until it ends (<see cref="Leave"/>), across continue-as-new generations. Waiting happens in the
/// orchestration (a durable timer between asks), never in a long-blocking activity: a queued run costs no worker time,
/// no retry budget and no function timeout. A waiter that stops asking (its orchestration was terminated elsewhere)
/// loses its place after <see cref="WorkflowOptions.QueuedRunExpiry"/>, and a holder none of whose activities has run
/// here for <see cref="WorkflowOptions.HeldRunExpiry"/> (<see cref="Touch"/>) loses its slot — one none of whose
/// activities ever ran here (another worker of the hub trained it) after <see cref="WorkflowOptions.QueuedRunExpiry"/> —
/// so neither can stall the queue. Exact in one process (<c>finetune serve</c>, <c>train</c>, <c>worker</c>); on a scaled-out Functions app each
/// instance admits its own runs, while their activities may run on any instance.
/// </summary>
public sealed class RunSlots(IOptions<WorkflowOptions> options, TimeProvider time)
{
    private readonly Lock gate = new();
    private readonly Dictionary<string, Holder> holders = new(StringComparer.Ordinal);
    private readonly List<Waiter> queue = [];
    // Completed when a slot frees: a waiter asking within its short wait is admitted at once, not a poll later.
    private TaskCompletionSource freed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Runs that may hold a slot at once here: configured, or this machine's cores (at least two).</summary>
    public int Capacity => options.Value.MaxConcurrentRuns ?? Math.Max(2, Environment.ProcessorCount);

    /// <summary>The runs holding a slot now.</summary>
    public IReadOnlyCollection<string> Holders
    {
        get
        {
            lock (gate) return [.. holders.Keys];
        }
    }

    /// <summary>
    /// Admits <paramref name="runId"/> (estimated at <paramref name="estimatedBytes"/>) when it holds a slot already or
    /// one is free for it. Otherwise a run joining the queue is told its place at once (its status says queued without
    /// delay); a run already queued waits up to <see cref="WorkflowOptions.AdmissionWait"/> for a slot, then is told its
    /// place and when to ask again.
    /// </summary>
    public async Task<Admission> EnterAsync(string runId, long estimatedBytes, CancellationToken cancellationToken)
    {
        var deadline = time.GetUtcNow() + options.Value.AdmissionWait;
        while (true)
        {
            Task slotFreed;
            int position;
            bool joined;
            lock (gate)
            {
                joined = !holders.ContainsKey(runId) && !queue.Exists(w => w.RunId == runId);
                position = TryEnter(runId, estimatedBytes);
                if (position == 0) return new Admission(true, 0, TimeSpan.Zero);
                slotFreed = freed.Task;
            }
            var left = deadline - time.GetUtcNow();
            if (joined || left <= TimeSpan.Zero) return new Admission(false, position, options.Value.QueuePollInterval);
            try
            {
                await slotFreed.WaitAsync(left, time, cancellationToken);
            }
            catch (TimeoutException)
            {
                // Asked once more below: the answer then carries the position.
            }
        }
    }

    /// <summary>Marks the run's slot, if it holds one here, as in use now: its activities call this while they work.</summary>
    public void Touch(string runId)
    {
        lock (gate)
        {
            if (holders.TryGetValue(runId, out var holder)) holders[runId] = holder with { LastSeen = time.GetUtcNow(), Touched = true };
        }
    }

    /// <summary>Frees the run's slot, or its place in the queue: when it ends, is cancelled or purged.</summary>
    public void Leave(string runId)
    {
        lock (gate)
        {
            bool held = holders.Remove(runId);
            queue.RemoveAll(w => w.RunId == runId);
            if (held) Signal();
        }
    }

    // 0 when admitted, else the position in the queue. Under the lock.
    private int TryEnter(string runId, long estimatedBytes)
    {
        var now = time.GetUtcNow();
        if (holders.TryGetValue(runId, out var held))
        {
            holders[runId] = held with { LastSeen = now };
            return 0;
        }
        queue.RemoveAll(w => now - w.LastAsked > options.Value.QueuedRunExpiry);
        // A holder none of whose activities ever ran here was most likely trained by another worker of the hub, which cannot
        // free a slot of this one: it expires as a waiter does.
        foreach (var stale in holders.Where(h => now - h.Value.LastSeen > (h.Value.Touched ? options.Value.HeldRunExpiry : options.Value.QueuedRunExpiry))
            .Select(h => h.Key).ToList()) holders.Remove(stale);
        int index = queue.FindIndex(w => w.RunId == runId);
        if (index < 0)
        {
            queue.Add(new Waiter(runId, now));
            index = queue.Count - 1;
        }
        else
        {
            queue[index] = queue[index] with { LastAsked = now };
        }
        // First come, first served: only the head may take a slot, so a large run is not passed forever by small ones.
        // A run alone is admitted whatever its estimate: the estimate was checked against the budget at submit.
        long budget = JobMemory.MemoryBudgetBytes(options.Value);
        bool fits = holders.Count == 0 || (holders.Count < Capacity && holders.Values.Sum(h => h.EstimatedBytes) + estimatedBytes <= budget);
        if (index != 0 || !fits) return index + 1;
        queue.RemoveAt(0);
        holders[runId] = new Holder(estimatedBytes, now);
        // The next in line may fit too.
        Signal();
        return 0;
    }

    private void Signal()
    {
        var signalled = freed;
        freed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        signalled.TrySetResult();
    }

    private sealed record Holder(long EstimatedBytes, DateTimeOffset LastSeen, bool Touched = false);

    private sealed record Waiter(string RunId, DateTimeOffset LastAsked);
}
