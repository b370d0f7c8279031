using FineTune.Core.Models;
using FineTune.Core.Weights;
using FineTune.Storage;
using FineTune.Workflow.Jobs;
using FineTune.Workflow.Orchestration;
using FineTune.Workflow.Services;
using Microsoft.DurableTask;

namespace FineTune.Workflow.Activities;

/// <summary>
/// The recipe's "fetch pretrained weights" step, the first of every run: checks the job id is bound to this spec
/// (however the run was started), then brings the pretrained weights in, verified, and shares them through the
/// artifact store by hash. A local weights file is checked against the roots again here, where it is read.
/// </summary>
[DurableTask(ActivityNames.FetchPretrainedWeights)]
public sealed class FetchPretrainedWeights(WeightsFetcher fetcher, IArtifactStore store, RunControl runs, WorkerStopping stopping, LocalPathPolicy paths)
    : TaskActivity<FineTuneJob, WeightsRef>
{
    public override Task<WeightsRef> RunAsync(TaskActivityContext context, FineTuneJob job) =>
        runs.UntilCancelledAsync(job, token => FetchAsync(job, token), stopping.Token);

    private async Task<WeightsRef> FetchAsync(FineTuneJob job, CancellationToken token)
    {
        var spec = job.Spec;
        // The run reports this stage as its orchestration saw it (queueing included); the metric is the fetch's own time.
        var clock = System.Diagnostics.Stopwatch.StartNew();
        // A sweep's feature pass is its sweep's internal run (its control run): recorded so that catalogs list the sweep, not it.
        await runs.BindSpecAsync(job.JobId, spec, token, sweep: job.ControlRun);
        paths.RequireWeights(spec.Weights.Source);
        var fetched = await fetcher.FetchAsync(ModelRegistry.Get(spec.Model), spec.Weights.Source, spec.Weights.Sha256, token);
        string name = ArtifactNames.Weights(fetched.Sha256 + Path.GetExtension(fetched.Path));
        if (!await store.ExistsAsync(name, token))
        {
            try
            {
                await using var file = File.OpenRead(fetched.Path);
                await store.WriteAsync(name, file, WriteMode.CreateNew, token);
            }
            catch (ArtifactExistsException)
            {
                // Another run stored the same weights meanwhile: same hash, same bytes.
            }
        }
        WorkflowMetrics.StagesTimed([new StageTime(Stages.Weights, clock.Elapsed.TotalSeconds)]);
        return new WeightsRef(name, fetched.Sha256, fetched.Source);
    }
}
