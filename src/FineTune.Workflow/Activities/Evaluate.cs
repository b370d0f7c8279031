using System.Diagnostics;
using System.Text;
using FineTune.Core.Engine;
using FineTune.Core.Evaluation;
using FineTune.Core.Training;
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
public sealed class Evaluate(WorkerFiles worker, FineTuneEngine engine, WorkerStopping stopping, RunControl runs) : TaskActivity<ModelRequest, EvaluationSummary>
{
    public override Task<EvaluationSummary> RunAsync(TaskActivityContext context, ModelRequest request) =>
        runs.UntilCancelledAsync(request.Job, token => EvaluateAsync(request, token), stopping.Token);

    private async Task<EvaluationSummary> EvaluateAsync(ModelRequest request, CancellationToken token)
    {
        var files = worker.For(request.Job);
        var clock = Stopwatch.StartNew();
        var inputs = await files.LoadAsync(request.Weights, request.Prepared, token);
        var state = await files.StateAtAsync(request.Sequence, token);
        var layout = files.Layout;
        var solving = Stopwatch.StartNew();
        var solution = engine.SolveHead(inputs.Recipe, inputs.Dataset, state, inputs.Features, token);
        if (solution?.State is { } solved)
        {
            // Publishing reads it from here; a repeated call solves again to the same bytes.
            await files.WriteAsync(layout.ConvexHead, solved.Parts[TrainingSnapshot.ModelPart], WriteMode.Overwrite, token);
            state = solved;
        }
        double solveSeconds = solving.Elapsed.TotalSeconds;
        var report = engine.Evaluate(inputs.Recipe, inputs.Dataset, state, inputs.Features, token, inputs.KeptImages);

        await files.WriteAsync(layout.EvaluationReport, Encoding.UTF8.GetBytes(report.ToJson()), WriteMode.Overwrite, token);
        var csv = new StringWriter();
        report.WritePredictionsCsv(csv);
        await files.WriteAsync(layout.Predictions, Encoding.UTF8.GetBytes(csv.ToString()), WriteMode.Overwrite, token);
        await files.WriteAsync(layout.ConfusionPlot, ReportPlots.Confusion(report), WriteMode.Overwrite, token);
        // The report names images as users do; this process reads them where the dataset put them.
        var paths = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var sample in inputs.Dataset.Validation.Concat(inputs.Dataset.Test)) paths.TryAdd(sample.Name, sample.Path);
        for (int i = 0; i < report.Misclassified.Count; i++)
            await files.WriteAsync(layout.MisclassifiedImage(i), Thumbnail.Png(paths[report.Misclassified[i].Path]), WriteMode.Overwrite, token);
        StageTime[] times = solution is null
            ? [new StageTime(Stages.Evaluation, clock.Elapsed.TotalSeconds)]
            : [new StageTime(Stages.ConvexHead, solveSeconds), new StageTime(Stages.Evaluation, clock.Elapsed.TotalSeconds - solveSeconds)];
        WorkflowMetrics.StagesTimed(times);
        return new EvaluationSummary(report.Split, report.Loss, report.Top1Accuracy, report.Top5Accuracy, report.Count, layout.EvaluationReport, layout.Predictions, times)
        {
            ConvexHead = solution is null ? null : new ConvexHeadSummary(solution.State is not null, solution.WeightDecay, solution.ValidationLoss,
                solution.ValidationAccuracy, solution.EpochValidationLoss, solution.EpochValidationAccuracy),
        };
    }
}
