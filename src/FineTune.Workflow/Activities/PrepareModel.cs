using System.Text.Json;
using FineTune.Core.Engine;
using FineTune.Storage;
using FineTune.Workflow.Jobs;
using FineTune.Workflow.Orchestration;
using FineTune.Workflow.Services;
using Microsoft.DurableTask;
using Microsoft.Extensions.Options;

namespace FineTune.Workflow.Activities;

/// <summary>
/// The recipe's "freeze + replace head" step: scans the dataset, sizes the head to its classes, freezes, and
/// stores the backbone features when the feature cache applies, or, for a data set larger than one shard of the pass, leaves
/// them to <see cref="ComputeFeatureShard"/> (<see cref="PreparedSummary.PassShards"/>). Writes the dataset report (skipped files).
/// </summary>
[DurableTask(ActivityNames.PrepareModel)]
public sealed class PrepareModel(WorkerFiles worker, FineTuneEngine engine, IOptions<WorkflowOptions> options, WorkerStopping stopping, RunControl runs)
    : TaskActivity<PrepareRequest, PreparedSummary>
{
    public override Task<PreparedSummary> RunAsync(TaskActivityContext context, PrepareRequest request) =>
        runs.UntilCancelledAsync(request.Job, token => PrepareAsync(request, token), stopping.Token);

    private async Task<PreparedSummary> PrepareAsync(PrepareRequest request, CancellationToken token)
    {
        var files = worker.For(request.Job);
        var clock = new StageClock();
        // The scan's decoded images go to the feature pass that follows: no file is decoded twice.
        var inputs = await files.LoadAsync(request.Weights, prepared: null, token, clock, forFeaturePass: true);
        var (dataset, recipe) = (inputs.Dataset, inputs.Recipe);
        var (prepared, features) = clock.Time(Stages.FeaturePass, () => engine.Prepare(recipe, dataset, token, options.Value.FeatureShardBytes, inputs.Fitted, options.Value.FeatureCacheBytes,
            options.Value.FeaturePassShardImages));
        var layout = files.Layout;
        var shards = new List<FeatureShardRef>();
        using (features)
        {
            foreach (string shard in features?.Shards ?? [])
                shards.Add(await files.StoreFeatureShardAsync(features!, shard, token));
        }
        var report = new
        {
            classes = dataset.Classes,
            train = dataset.Train.Count,
            validation = dataset.Validation.Count,
            test = dataset.Test.Count,
            skipped = dataset.Skipped,
            freeze = prepared.Freeze,
        };
        await files.WriteAsync(layout.DatasetReport, JsonSerializer.SerializeToUtf8Bytes(report, WireJson.Options),
            WriteMode.Overwrite, token);
        WorkflowMetrics.StagesTimed(clock.Times);
        return new PreparedSummary(dataset.Classes, dataset.Train.Count, dataset.Validation.Count, dataset.Test.Count, dataset.Skipped.Count,
            prepared.Freeze.TrainableParameters, prepared.Freeze.TotalParameters, prepared.StepsPerEpoch, shards, clock.Times)
        {
            StacksTrials = prepared.StacksTrials,
            PassShards = prepared.PassShards,
        };
    }
}
