using System.Diagnostics;
using System.Text;
using FineTune.Core.Engine;
using FineTune.Storage;
using FineTune.Workflow.Jobs;
using FineTune.Workflow.Orchestration;
using FineTune.Workflow.Services;
using Microsoft.DurableTask;

namespace FineTune.Workflow.Activities;

/// <summary>
/// The recipe's "evaluate" step: the chosen checkpoint on the held-out test set, or on the validation set when the dataset
/// has none; writes the JSON report (naming that split), per-image predictions and the confusion matrix.
/// </summary>
[DurableTask(ActivityNames.Evaluate)]
public sealed class Evaluate(RunFiles files, FineTuneEngine engine) : TaskActivity<ModelRequest, EvaluationSummary>
{
    public override async Task<EvaluationSummary> RunAsync(TaskActivityContext context, ModelRequest request)
    {
        var job = request.Job;
        var clock = Stopwatch.StartNew();
        var dataset = await files.DatasetAsync(job, CancellationToken.None);
        var recipe = job.Spec.ToRecipe(await files.WeightsPathAsync(request.Weights, CancellationToken.None));
        var state = await files.StateAtAsync(job, request.Sequence, CancellationToken.None);
        var features = await files.FeaturesAsync(job, request.Prepared, CancellationToken.None);
        var report = engine.Evaluate(recipe, dataset, state, features, CancellationToken.None);

        var layout = new RunLayout(job.JobId);
        await files.WriteAsync(layout.EvaluationReport, Encoding.UTF8.GetBytes(report.ToJson()), WriteMode.Overwrite, CancellationToken.None);
        var csv = new StringWriter();
        report.WritePredictionsCsv(csv);
        await files.WriteAsync(layout.Predictions, Encoding.UTF8.GetBytes(csv.ToString()), WriteMode.Overwrite, CancellationToken.None);
        await files.WriteAsync(layout.ConfusionPlot, ReportPlots.Confusion(report), WriteMode.Overwrite, CancellationToken.None);
        return new EvaluationSummary(report.Split, report.Loss, report.Top1Accuracy, report.Top5Accuracy, report.Count, layout.EvaluationReport, layout.Predictions,
            [new StageTime(Stages.Evaluation, clock.Elapsed.TotalSeconds)]);
    }
}
