namespace FineTune.Workflow.Services;

/// <summary>How the workflow runs on this host (bound from configuration, section "Workflow").</summary>
public sealed class WorkflowOptions
{
    public const string SectionName = "Workflow";

    /// <summary>Local scratch: cached weights and datasets fetched from the artifact store.</summary>
    public string WorkDirectory { get; set; } = Path.Combine(Path.GetTempPath(), "finetune");

    /// <summary>
    /// The most bytes a .zip dataset may expand to on this worker (less when the disk has less to spare): see
    /// <see cref="Core.Data.DatasetOptions.MaxExpandedBytes"/>.
    /// </summary>
    public long MaxDatasetExpandedBytes { get; set; } = Core.Data.DatasetOptions.DefaultMaxExpandedBytes;

    /// <summary>Newest checkpoints kept per run, besides the best epoch's.</summary>
    public int CheckpointsToKeep { get; set; } = 2;

    /// <summary>The most bytes one stored shard of cached features holds (below the 2 GiB of one .NET array).</summary>
    public long FeatureShardBytes { get; set; } = Core.Training.FeatureCache.DefaultShardBytes;

    /// <summary>The most bytes of cached features a run keeps, all splits together: past it, the run trains on images.</summary>
    public long FeatureCacheBytes { get; set; } = Core.Training.FeatureCache.DefaultBudgetBytes;

    /// <summary>
    /// The most images one activity of the feature pass takes: a data set with more has its pass fanned out as shards of at
    /// most this many (<see cref="Activities.ComputeFeatureShard"/>), which the task hub's workers share.
    /// </summary>
    public int FeaturePassShardImages { get; set; } = 2048;

    /// <summary>
    /// The most bytes of images the dataset scan keeps decoded for the feature pass that follows, and a run training on
    /// images keeps for its later epochs on a worker (<see cref="Core.Data.FittedImages"/>): each kept image is not decoded
    /// again; 0 keeps none.
    /// </summary>
    public long DecodedImagesBytes { get; set; } = Core.Data.FittedImages.DefaultBudgetBytes;

    /// <summary>How often a running chunk looks for a cancel request: it stops within this and one step.</summary>
    public TimeSpan CancelPollInterval { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>
    /// How long a restart (or a start after a cancel) waits for the cancelled attempt's running chunk to stop before it is
    /// refused; a running marker (<see cref="Storage.RunLayout.Running"/>) not renewed for this long is a dead worker's.
    /// </summary>
    public TimeSpan StopWaitLimit { get; set; } = TimeSpan.FromMinutes(2);

    /// <summary>Starts of one chunk after which the run fails instead of starting it again (a worker killed every time).</summary>
    public int MaxChunkAttempts { get; set; } = 5;

    /// <summary>Memory this worker's runs may take, in MB: a job estimated past it is refused when submitted. Null: three quarters of what the process may use.</summary>
    public long? MemoryBudgetMB { get; set; }

    /// <summary>Runs (a sweep's trials each count) that hold a slot on this worker at once; the rest queue (<see cref="RunSlots"/>). Null: the machine's cores, at least two.</summary>
    public int? MaxConcurrentRuns { get; set; }

    /// <summary>
    /// How long one ask for a slot waits for one to free before the run's status says queued. Short: a waiting ask holds
    /// one of the worker's activity slots, which the holder's own LeaveRun may need to free the slot (measured: a
    /// 200-trial sweep's stacks spent 5 s per queue turn with 5 s here, none with 0.5 s).
    /// </summary>
    public TimeSpan AdmissionWait { get; set; } = TimeSpan.FromSeconds(0.5);

    /// <summary>How long a queued run's orchestration waits (a durable timer) between asks for a slot.</summary>
    public TimeSpan QueuePollInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>A queued run that has not asked for this long (terminated elsewhere) loses its place.</summary>
    public TimeSpan QueuedRunExpiry { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>A run holding a slot none of whose activities has run on this worker for this long (ended elsewhere) loses it.</summary>
    public TimeSpan HeldRunExpiry { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>Days after its last change a finished run's history and artifacts are purged (its published model stays); null: never.</summary>
    public int? RetentionDays { get; set; }
}
