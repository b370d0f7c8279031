namespace FineTune.Workflow.Services;

/// <summary>How the workflow runs on this host (bound from configuration, section "Workflow").</summary>
public sealed class WorkflowOptions
{
    public const string SectionName = "Workflow";

    /// <summary>Local scratch: cached weights and datasets fetched from the artifact store.</summary>
    public string WorkDirectory { get; set; } = Path.Combine(Path.GetTempPath(), "finetune");

    /// <summary>Newest checkpoints kept per run, besides the best epoch's.</summary>
    public int CheckpointsToKeep { get; set; } = 2;
}
