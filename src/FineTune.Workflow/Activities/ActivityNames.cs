namespace FineTune.Workflow.Activities;

/// <summary>
/// The durable names of the activities: what orchestration histories record and the Functions app binds. A
/// name stays when its class is renamed, so runs in flight replay against the new code.
/// </summary>
public static class ActivityNames
{
    public const string FetchPretrainedWeights = nameof(Activities.FetchPretrainedWeights);
    public const string PrepareModel = nameof(Activities.PrepareModel);
    /// <summary>The class was TrainEpoch; it trains a chunk of steps, but histories name it so.</summary>
    public const string TrainChunk = "TrainEpoch";
    public const string Evaluate = nameof(Activities.Evaluate);
    public const string Publish = nameof(Activities.Publish);
    public const string WriteSweepReport = nameof(Activities.WriteSweepReport);
    public const string ReleaseRunFiles = nameof(Activities.ReleaseRunFiles);
    public const string AdmitRun = nameof(Activities.AdmitRun);
    public const string LeaveRun = nameof(Activities.LeaveRun);
    public const string TrainStackedTrials = nameof(Activities.TrainStackedTrials);
    public const string SaveTrialCheckpoint = nameof(Activities.SaveTrialCheckpoint);
    public const string ComputeFeatureShard = nameof(Activities.ComputeFeatureShard);
}
