using System.Text.Json;
using FineTune.Core.Training;
using FineTune.Storage;
using FineTune.Workflow.Jobs;
using FineTune.Workflow.Orchestration;
using FineTune.Workflow.Services;
using Microsoft.DurableTask;

namespace FineTune.Workflow.Activities;

/// <summary>
/// A sweep's report, in the sweep's own run folder: every trial (best first) with the values it set, its state, best
/// epoch, metrics and workers, as JSON; and a plot of the sweep's metric against each swept parameter.
/// </summary>
[DurableTask(ActivityNames.WriteSweepReport)]
public sealed class WriteSweepReport(IArtifactStore store, WorkerStopping stopping) : TaskActivity<SweepReportRequest, SweepSummary>
{
    public override async Task<SweepSummary> RunAsync(TaskActivityContext context, SweepReportRequest request)
    {
        var token = stopping.Token;
        var layout = new RunLayout(request.SweepId);
        var choice = StoppingMetrics.Choices[request.Metric];
        var best = request.Trials.First(t => t.BestEpoch is not null);
        var report = new SweepReport(request.SweepId, choice.Name, best.JobId, request.Trials);
        await WriteAsync(layout.SweepReport, JsonSerializer.SerializeToUtf8Bytes(report, WireJson.Options), token);
        await WriteAsync(layout.SweepPlot, ReportPlots.Sweep(request.Trials, choice.Name, request.Metric == StoppingMetric.ValidationAccuracy), token);
        return new SweepSummary(best.JobId, request.Metric, request.Trials, 0, layout.SweepReport, layout.SweepPlot);
    }

    private async Task WriteAsync(string name, byte[] data, CancellationToken token)
    {
        using var stream = new MemoryStream(data, writable: false);
        await store.WriteAsync(name, stream, WriteMode.Overwrite, token);
    }
}
