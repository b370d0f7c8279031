using FineTune.Core.Engine;
using FineTune.Workflow.Orchestration;
using FineTune.Workflow.Services;
using Microsoft.DurableTask;

namespace FineTune.Workflow.Activities;

/// <summary>
/// One shard of a fanned-out feature pass (<see cref="PreparedSummary.PassShards"/>): its rows' features, stored as the
/// single pass stores a shard. Any worker of the task hub takes it; one killed mid-shard leaves no result, and the
/// orchestration's retry computes the shard again elsewhere (the bytes are the same, so its name and hash are too).
/// </summary>
[DurableTask(ActivityNames.ComputeFeatureShard)]
public sealed class ComputeFeatureShard(WorkerFiles worker, FineTuneEngine engine, WorkerStopping stopping, RunControl runs)
    : TaskActivity<FeatureShardRequest, ComputedFeatureShard>
{
    public override Task<ComputedFeatureShard> RunAsync(TaskActivityContext context, FeatureShardRequest request) =>
        runs.UntilCancelledAsync(request.Job, token => ComputeAsync(request, token), stopping.Token);

    private async Task<ComputedFeatureShard> ComputeAsync(FeatureShardRequest request, CancellationToken token)
    {
        var files = worker.For(request.Job);
        // The dataset's scan is this worker's cached one after its first shard.
        var inputs = await files.LoadAsync(request.Weights, prepared: null, token);
        using var features = engine.ComputeShard(inputs.Recipe, inputs.Dataset, request.Shard, token);
        var stored = await files.StoreFeatureShardAsync(features, request.Shard.Shard, token);
        return new ComputedFeatureShard(stored, WorkerIdentity.Current);
    }
}
