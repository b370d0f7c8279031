namespace FineTune.Workflow.Services;

/// <summary>How the workflow runs on this host (bound from configuration, section "Workflow").</summary>
public sealed class WorkflowOptions
{
    public const string SectionName = "Workflow";

    /// <summary>Local scratch: cached weights and datasets fetched from the artifact store.</summary>
    public string WorkDirectory { get; set; } = Path.Combine(Path.GetTempPath(), "finetune");

    /// <summary>Newest checkpoints kept per run, besides the best epoch's.</summary>
    public int CheckpointsToKeep { get; set; } = 2;

    /// <summary>The most bytes one stored shard of cached features holds (below the 2 GiB of one .NET array).</summary>
    public long FeatureShardBytes { get; set; } = Core.Training.FeatureCache.DefaultShardBytes;

    /// <summary>How often a running chunk looks for a cancel request: it stops within this and one step.</summary>
    public TimeSpan CancelPollInterval { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>Starts of one chunk after which the run fails instead of starting it again (a worker killed every time).</summary>
    public int MaxChunkAttempts { get; set; } = 5;

    /// <summary>
    /// Runs and sweep trials this worker process trains at once (<see cref="RunSlots"/>); the rest queue. Null: as many as
    /// fit <see cref="MemoryBudgetMB"/> at the seed recipe's estimate, at most one per core.
    /// </summary>
    public int? MaxConcurrentRuns { get; set; }

    /// <summary>Memory this worker's runs may take, in MB: a job estimated past it is refused when submitted. Null: three quarters of what the process may use.</summary>
    public long? MemoryBudgetMB { get; set; }

    /// <summary>How long a run holds its slot without asking again (a run terminated where it stood never releases it).</summary>
    public TimeSpan RunSlotLease { get; set; } = TimeSpan.FromHours(2);

    /// <summary>The longest a queued run waits before asking for a slot again (it starts at 1 s and doubles).</summary>
    public TimeSpan QueuePollInterval { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Days after its last change a finished run's history and artifacts are purged (its published model stays); null: never.</summary>
    public int? RetentionDays { get; set; }
}
