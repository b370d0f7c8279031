using FineTune.Workflow.Jobs;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace FineTune.Workflow.Services;

/// <summary>A slot asked for: granted, or the place in the queue and when to ask again.</summary>
public sealed record Admission(bool Admitted, int Position, int Capacity, double RetryAfterSeconds);

/// <summary>
/// Admission control: at most <see cref="Capacity"/> runs or sweep trials (holders, by orchestration instance id) do
/// heavy work in this process at once; the others queue, first come first served.
/// <para>
/// A run holds its slot from its first heavy activity to its end, not per activity: a limit on concurrent activities
/// alone (the Durable Task sidecar's, host.json's <c>maxConcurrentActivityFunctions</c>) lets 16 runs interleave their
/// chunks, each keeping its scanned dataset, pooled model and features, which is how 16 runs took 3.4 GB.
/// </para><para>
/// The orchestrator only sequences: it asks through an activity that answers at once (<see cref="Activities.AdmitRun"/>)
/// and, when queued, says so in its status and waits on a durable timer. An activity that waited for a slot would hold
/// one of the few activity work items a worker runs at once (the in-memory sidecar: one per core; Functions: one) and
/// starve the very runs holding the slots. The slots are this process's, as the memory they guard is: on a Functions
/// app of several instances each admits its own; a run is released by its orchestration when it ends however it
/// ends, and one terminated where it stood frees its slot after <see cref="WorkflowOptions.RunSlotLease"/> unasked.
/// </para>
/// </summary>
public sealed partial class RunSlots(IOptions<WorkflowOptions> options, TimeProvider time, ILogger<RunSlots> logger)
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, DateTimeOffset> _holders = [];
    // Waiting holders in arrival order, with when each last asked: one that stopped asking (terminated) is dropped.
    private readonly List<(string Holder, DateTimeOffset Asked)> _queue = [];

    public int Capacity { get; } = ConcurrentRuns(options.Value);

    /// <summary>The most holders ever admitted at once: what admission promises, recorded for tests and logs.</summary>
    public int MostHeld { get; private set; }

    /// <summary>Grants <paramref name="holder"/> a slot when it holds one, or one is free and nobody queued before it; else queues it.</summary>
    public Admission TryAdmit(string holder)
    {
        var now = time.GetUtcNow();
        var settings = options.Value;
        lock (_lock)
        {
            Expire(now, settings);
            if (_holders.ContainsKey(holder))
            {
                _holders[holder] = now;
                return new Admission(true, 0, Capacity, 0);
            }
            int index = _queue.FindIndex(w => w.Holder == holder);
            if (index < 0)
            {
                _queue.Add((holder, now));
                index = _queue.Count - 1;
            }
            else _queue[index] = (holder, now);
            int free = Capacity - _holders.Count;
            if (index < free)
            {
                _queue.RemoveAt(index);
                _holders[holder] = now;
                MostHeld = Math.Max(MostHeld, _holders.Count);
                Admitted(holder, _holders.Count, Capacity);
                return new Admission(true, 0, Capacity, 0);
            }
            Queued(holder, index + 1, Capacity);
            return new Admission(false, index + 1, Capacity, settings.QueuePollInterval.TotalSeconds);
        }
    }

    /// <summary>Frees the holder's slot (or its place in the queue); nothing when it has neither.</summary>
    public void Release(string holder)
    {
        lock (_lock)
        {
            _queue.RemoveAll(w => w.Holder == holder);
            if (_holders.Remove(holder)) Released(holder, _holders.Count, Capacity);
        }
    }

    private void Expire(DateTimeOffset now, WorkflowOptions settings)
    {
        foreach (var (holder, asked) in _holders.Where(h => now - h.Value > settings.RunSlotLease).ToList())
        {
            _holders.Remove(holder);
            LeaseExpired(holder, settings.RunSlotLease);
        }
        // A queued run asks at least every poll interval; twice that and more unasked, it has ended.
        _queue.RemoveAll(w => now - w.Asked > 2 * settings.QueuePollInterval + TimeSpan.FromSeconds(10));
    }

    /// <summary>The memory runs may take here: configured, or three quarters of what this process may use (its cgroup's limit when it has one).</summary>
    public static long MemoryBudgetBytes(WorkflowOptions options) =>
        options.MemoryBudgetMB is { } megabytes ? megabytes << 20 : GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 4 * 3;

    /// <summary>
    /// Configured, or as many seed-recipe runs as fit the memory budget, at most one per core (a run's training uses the
    /// cores it gets, so more at once only slices them) and at least one.
    /// </summary>
    public static int ConcurrentRuns(WorkflowOptions options)
    {
        if (options.MaxConcurrentRuns is { } configured) return Math.Max(1, configured);
        long seedRecipe = JobMemory.Estimate(new JobSpec()).TotalBytes;
        return (int)Math.Clamp(MemoryBudgetBytes(options) / seedRecipe, 1, Environment.ProcessorCount);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Run {Holder} admitted: {Held} of {Capacity} run slots held")]
    private partial void Admitted(string holder, int held, int capacity);

    [LoggerMessage(Level = LogLevel.Information, Message = "Run {Holder} queued at position {Position}: all {Capacity} run slots held")]
    private partial void Queued(string holder, int position, int capacity);

    [LoggerMessage(Level = LogLevel.Information, Message = "Run {Holder} released its slot: {Held} of {Capacity} held")]
    private partial void Released(string holder, int held, int capacity);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Run {Holder} held its slot unasked for {Lease}: released")]
    private partial void LeaseExpired(string holder, TimeSpan lease);
}
