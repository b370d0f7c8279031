using System.Globalization;
using FineTune.Core.Training;
using FineTune.Storage;
using FineTune.Storage.Checkpoints;
using FineTune.Workflow.Jobs;
using FineTune.Workflow.Orchestration;
using FineTune.Workflow.Services;
using Microsoft.DurableTask.Client;
using Microsoft.DurableTask.Converters;
using Microsoft.Extensions.Logging.Abstractions;
using Spectre.Console;

namespace FineTune.Cli;

/// <summary>
/// Shows a local run: progress while it runs (bars on a terminal, one line per change elsewhere), then the
/// metrics, where its artifacts are, and the time of each stage.
/// </summary>
/// <param name="artifactPrefix">what makes an artifact name a path the user can open ("" for blob storage)</param>
/// <param name="startUpSeconds">from the process's start to the run's start: runtime, host and backend</param>
/// <param name="store">the run's artifacts: its finished epochs (a sweep's trials') are read from its metrics.jsonl</param>
internal sealed class RunRenderer(TextWriter output, TextWriter error, string artifactPrefix, double startUpSeconds, IArtifactStore store)
{
    private readonly RunCatalog _catalog = new(store, new CheckpointStore(store, NullLogger<CheckpointStore>.Instance));

    /// <summary>Progress bars on a terminal; one line per change where output goes to a file, a pipe or a test.</summary>
    /// <param name="pollInterval">how often the run's state is asked for: what a query costs on the backend</param>
    public Task<OrchestrationMetadata> FollowAsync(DurableTaskClient client, TimeSpan pollInterval, string id, CancellationToken cancellationToken) =>
        ReferenceEquals(output, Console.Out) && AnsiConsole.Profile.Capabilities.Interactive
            ? FollowWithBarsAsync(client, pollInterval, id, cancellationToken)
            : FollowWithLinesAsync(client, pollInterval, id, cancellationToken);

    private async Task<OrchestrationMetadata> FollowWithBarsAsync(DurableTaskClient client, TimeSpan pollInterval, string id, CancellationToken cancellationToken)
    {
        OrchestrationMetadata? final = null;
        await AnsiConsole.Progress().AutoClear(false).HideCompleted(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new SpinnerColumn())
            .StartAsync(async progress =>
            {
                var tasks = new Dictionary<string, ProgressTask>();
                // A sweep's trials run side by side: a bar each, from its recorded epochs, none closing another.
                var trialBars = new Dictionary<string, ProgressTask>(StringComparer.Ordinal);
                ProgressTask Task(string key, string description)
                {
                    if (!tasks.TryGetValue(key, out var task))
                    {
                        foreach (var open in tasks.Values.Where(t => !t.IsFinished)) open.Value = open.MaxValue;
                        tasks[key] = task = progress.AddTask(description);
                    }
                    return task;
                }
                while (true)
                {
                    var state = await client.GetInstanceAsync(id, getInputsAndOutputs: true, cancellationToken);
                    var custom = state?.SerializedCustomStatus is { } status ? JsonDataConverter.Default.Deserialize<RunStatus>(status) : null;
                    if (state?.Name == SweepOrchestrator.Name && state.ReadInputAs<FineTuneJob>() is { } sweepJob)
                    {
                        foreach (var trial in await _catalog.TrialsAsync(sweepJob.JobId, sweepJob.Spec, custom?.Sweep?.Terminated, cancellationToken))
                        {
                            if (trial.State == TrialStates.Pending) continue;
                            if (!trialBars.TryGetValue(trial.JobId, out var bar)) trialBars[trial.JobId] = bar = progress.AddTask(trial.JobId);
                            bar.Value = 100.0 * trial.EpochsDone / Math.Max(1, trial.Epochs);
                            bar.Description = Markup.Escape(TrialLine(trial));
                        }
                    }
                    if (custom is { } s)
                    {
                        if (s.Stage == RunStage.Training && s.Sweep is { } sweep)
                        {
                            var task = Task("trials", "trials");
                            task.Value = 100.0 * sweep.Finished / Math.Max(1, sweep.Trials);
                            task.Description = Markup.Escape(Describe(s).Split('\n')[^1].Trim());
                        }
                        else if (s.Stage == RunStage.Training)
                        {
                            bool boundary = s.Step == 0 && s.Epoch > 0;
                            int epoch = boundary ? s.Epoch - 1 : s.Epoch;
                            var task = Task($"epoch {epoch}", $"epoch {epoch + 1}/{s.Epochs}");
                            task.Value = boundary ? 100 : 100.0 * s.Step / Math.Max(1, s.StepsPerEpoch);
                            task.Description = Markup.Escape(Describe(s).Trim());
                        }
                        else if (s.Stage != RunStage.Completed)
                        {
                            // Epochs that finished between two polls still get their bar.
                            for (int epoch = 0; epoch < s.Epoch; epoch++)
                                Task($"epoch {epoch}", $"epoch {epoch + 1}/{s.Epochs} done").Value = 100;
                            var task = Task(s.Stage.Display(), s.Stage.Display());
                            task.IsIndeterminate = s.FeaturePass is null;
                            if (s.FeaturePass is { } pass) task.Value = 100.0 * pass.ShardsDone / Math.Max(1, pass.Shards);
                            task.Description = Markup.Escape(Describe(s).Trim());
                        }
                    }
                    if (state is { IsCompleted: true })
                    {
                        foreach (var task in tasks.Values) { task.IsIndeterminate = false; task.Value = task.MaxValue; }
                        final = state;
                        return;
                    }
                    await System.Threading.Tasks.Task.Delay(pollInterval, cancellationToken);
                }
            });
        return final!;
    }

    /// <summary>
    /// A line per change of the polled status, and a line per finished epoch, each once and in order: those come from the
    /// run's recorded metrics, since several epochs may finish between two polls.
    /// </summary>
    private async Task<OrchestrationMetadata> FollowWithLinesAsync(DurableTaskClient client, TimeSpan pollInterval, string id, CancellationToken cancellationToken)
    {
        string? last = null;
        int epochsPrinted = 0;
        var trialsPrinted = new Dictionary<string, (string State, int Epochs)>(StringComparer.Ordinal);
        while (true)
        {
            var state = await client.GetInstanceAsync(id, getInputsAndOutputs: true, cancellationToken);
            var s = state?.SerializedCustomStatus is { } status ? JsonDataConverter.Default.Deserialize<RunStatus>(status) : null;
            if (state?.Name == SweepOrchestrator.Name && state.ReadInputAs<FineTuneJob>() is { } sweep)
                await PrintTrialsAsync(sweep, s?.Sweep?.Terminated, trialsPrinted, cancellationToken);
            else
                epochsPrinted = await PrintFinishedEpochsAsync(id, epochsPrinted, cancellationToken);
            if (s is not null && !(s.Stage == RunStage.Training && s.Sweep is null && s.Step == 0 && s.Epoch > 0))
            {
                string line = Describe(s);
                if (line != last) output.WriteLine(line);
                last = line;
            }
            if (state is { IsCompleted: true }) return state;
            await Task.Delay(pollInterval, cancellationToken);
        }
    }

    /// <summary>Prints the epochs of the run's metrics.jsonl after the first <paramref name="printed"/>; returns how many are printed now.</summary>
    private async Task<int> PrintFinishedEpochsAsync(string id, int printed, CancellationToken cancellationToken)
    {
        var epochs = await RunMetrics.ReadAsync(store, id, cancellationToken);
        foreach (var e in epochs.Skip(printed))
            output.WriteLine($"  epoch {e.Epoch}/{e.Epochs} done  train_loss {e.TrainLoss:F4}  val_loss {e.ValidationLoss:F4}  val_acc {e.ValidationAccuracy:P1}  {e.Seconds:F1} s");
        return Math.Max(printed, epochs.Count);
    }

    /// <summary>A line for each trial of the sweep whose state or epochs changed since <paramref name="printed"/> recorded them.</summary>
    private async Task PrintTrialsAsync(FineTuneJob sweep, IReadOnlyList<int>? terminated, Dictionary<string, (string State, int Epochs)> printed,
        CancellationToken cancellationToken)
    {
        foreach (var trial in await _catalog.TrialsAsync(sweep.JobId, sweep.Spec, terminated, cancellationToken))
        {
            if (trial.State == TrialStates.Pending || (printed.TryGetValue(trial.JobId, out var seen) && seen == (trial.State, trial.EpochsDone))) continue;
            printed[trial.JobId] = (trial.State, trial.EpochsDone);
            output.WriteLine("  " + TrialLine(trial));
        }
    }

    private static string TrialLine(TrialProgress trial) => $"trial {trial.JobId}: {trial.State}, {trial.EpochsDone}/{trial.Epochs} epoch(s)"
        + (trial.ValidationAccuracy is { } accuracy ? $"  val_loss {trial.ValidationLoss:F4}  val_acc {accuracy:P1}" : "");

    private static string Describe(RunStatus s) => s.Stage switch
    {
        RunStage.Training when s.Sweep is { } sweep => (sweep.Latest is { BestEpoch: not null } latest
                ? $"  {latest.JobId} ({SweepPlanner.Describe(latest.Parameters)}): {latest.EpochsRun} epochs, val_loss {latest.ValidationLoss:F4}  val_acc {latest.ValidationAccuracy:P1}\n"
                : "")
            + $"  trials {sweep.Finished}/{sweep.Trials} done, {sweep.Running} running"
            + (sweep.BestTrial is { } best ? $"  best {best}: val_loss {sweep.BestValidationLoss:F4}  val_acc {sweep.BestValidationAccuracy:P1}" : ""),
        RunStage.Training => (s.Step == 0 && s.Epoch > 0 ? $"  epoch {s.Epoch}/{s.Epochs} done" : $"  epoch {s.Epoch + 1}/{s.Epochs}  step {s.Step}/{s.StepsPerEpoch}")
            + (s.LastLoss is { } loss ? $"  loss {loss:F4}" : "")
            + (s.ValidationAccuracy is { } accuracy ? $"  val_loss {s.ValidationLoss:F4}  val_acc {accuracy:P1}" : "")
            + (s.EtaSeconds is { } eta ? $"  eta {TimeSpan.FromSeconds(Math.Round(eta)):g}" : ""),
        RunStage.Queued => s.QueuePosition is { } position
            ? $"  queued: position {position} for a slot on this worker (Workflow:MaxConcurrentRuns)"
            : "  queued for a slot on this worker (Workflow:MaxConcurrentRuns)",
        RunStage.PreparingModel when s.FeaturePass is { } pass => $"  {s.Stage.Display()}: feature pass {pass.ShardsDone}/{pass.Shards} shards",
        var stage => $"  {stage.Display()}",
    };

    /// <summary>A finished run's report; its exit code, by <see cref="ErrorKinds"/> for a run that did not complete.</summary>
    public int Report(OrchestrationMetadata final)
    {
        if (final.RuntimeStatus != OrchestrationRuntimeStatus.Completed)
        {
            error.WriteLine($"run {final.RuntimeStatus.ToString().ToLowerInvariant()}: {Failure(final)}");
            return ErrorKinds.Of(final) == ErrorKinds.BadInput ? ExitCodes.BadInput : ExitCodes.Failed;
        }
        var result = JsonDataConverter.Default.Deserialize<FineTuneResult>(final.SerializedOutput)!;
        var e = result.Evaluation;
        var table = new Table().Border(TableBorder.Rounded).AddColumn("metric").AddColumn(new TableColumn("value").RightAligned());
        table.AddRow($"{e.Split} images", e.Images.ToString(CultureInfo.InvariantCulture));
        table.AddRow($"{e.Split} loss", e.Loss.ToString("F4", CultureInfo.InvariantCulture));
        table.AddRow("top-1 accuracy", e.Top1Accuracy.ToString("P1", CultureInfo.InvariantCulture));
        if (e.Top5Accuracy is { } top5) table.AddRow("top-5 accuracy", top5.ToString("P1", CultureInfo.InvariantCulture));
        table.AddRow("best epoch", $"{result.BestEpoch + 1} of {result.EpochsRun}{(result.StoppedEarly ? " (stopped early)" : "")}");
        if (e.ConvexHead is { } convex) table.AddRow("head", convex.Describe());
        AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(output) }).Write(table);
        string where = artifactPrefix;
        if (result.Sweep is { } sweep) ReportSweep(sweep, where);
        if (result.PassWorkers.Count > 0) output.WriteLine($"feature pass: fanned out to {result.PassWorkers.Count} worker(s): {string.Join(", ", result.PassWorkers)}");
        // A sweep's published model and reports are its best trial's.
        var layout = new RunLayout(RunLayout.JobIdOf(result.Published.Folder) ?? result.JobId);
        output.WriteLine($"published: {where}{result.Published.SafetensorsName} (PyTorch-loadable safetensors)");
        output.WriteLine($"           {where}{layout.Readme} (how to run it in PyTorch, and in ONNX Runtime when published as ONNX), {RunLayout.HubConfigFile}, {RunLayout.ModelCardFile}");
        output.WriteLine($"report:    {where}{e.ReportName}");
        output.WriteLine($"           {where}{e.PredictionsName}");
        output.WriteLine($"plots:     {where}{layout.Reports}{{{RunLayout.LossPlotFile},{RunLayout.AccuracyPlotFile},{RunLayout.ConfusionPlotFile}}}");
        var stages = result.Times.Select(t => $"{t.Stage} {t.Seconds:F1} s");
        output.WriteLine($"time:      {string.Join(" · ", ["start-up " + startUpSeconds.ToString("F1", CultureInfo.InvariantCulture) + " s", .. stages])} · total {ProcessSeconds():F1} s");
        return ExitCodes.Succeeded;
    }

    /// <summary>The best trials as a table (the report has them all), and where the sweep's report is.</summary>
    private void ReportSweep(SweepSummary sweep, string where)
    {
        const int Shown = 10;
        var keys = sweep.Trials.SelectMany(t => t.Parameters.Keys).Distinct().Order(StringComparer.Ordinal).ToList();
        var table = new Table().Border(TableBorder.Rounded).AddColumn("trial");
        // A column per swept field, headed by its last name (learningRate): the paths are in the report.
        foreach (var key in keys) table.AddColumn(new TableColumn(Markup.Escape(key.Split('.')[^1])).RightAligned());
        table.AddColumns("state", "epochs").AddColumn(new TableColumn("val_loss").RightAligned()).AddColumn(new TableColumn("val_acc").RightAligned());
        foreach (var trial in sweep.Trials.Take(Shown))
            table.AddRow([Markup.Escape(trial.JobId), .. keys.Select(k => Markup.Escape(trial.Parameters.TryGetValue(k, out var v) ? SweepPlanner.Show(v) : "")),
                trial.State, trial.EpochsRun.ToString(CultureInfo.InvariantCulture), trial.ValidationLoss?.ToString("F4", CultureInfo.InvariantCulture) ?? "-",
                trial.ValidationAccuracy?.ToString("P1", CultureInfo.InvariantCulture) ?? "-"]);
        output.WriteLine($"sweep: {sweep.Trials.Count} trials on {sweep.Trials.SelectMany(t => t.Workers).Distinct().Count()} worker(s), {sweep.FeaturePasses} backbone pass(es); "
            + $"best {sweep.BestTrial} by {StoppingMetrics.Choices[sweep.Metric].Name}{(sweep.Trials.Count > Shown ? $" (best {Shown} shown)" : "")}");
        AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(output) }).Write(table);
        output.WriteLine($"sweep report: {where}{sweep.ReportName}");
        output.WriteLine($"              {where}{sweep.PlotName}");
    }

    public static double ProcessSeconds() => (DateTime.Now - System.Diagnostics.Process.GetCurrentProcess().StartTime).TotalSeconds;

    /// <summary>
    /// What went wrong, without a stack trace or the framework's wrapping: the innermost failure (the activity's, inside the
    /// orchestration's), or a terminated run's reason.
    /// </summary>
    private static string Failure(OrchestrationMetadata final)
    {
        var failure = final.FailureDetails;
        while (failure?.InnerFailure is not null) failure = failure.InnerFailure;
        if (failure is not null) return failure.ErrorMessage;
        // The Azure Storage provider keeps no failure details: its failed run's output is the orchestration's failure message.
        // A terminated run's is the reason the client serialized.
        return (final.RuntimeStatus == OrchestrationRuntimeStatus.Terminated && final.SerializedOutput is { } reason
            ? JsonDataConverter.Default.Deserialize<string>(reason) : UserMessage(final.SerializedOutput)) ?? "unknown failure";
    }

    /// <summary>A failure message without the framework's wrapping.</summary>
    private static string? UserMessage(string? failure)
    {
        const string prefix = "failed with an unhandled exception: ";
        int at = failure?.LastIndexOf(prefix, StringComparison.Ordinal) ?? -1;
        return at < 0 ? failure : failure![(at + prefix.Length)..];
    }
}
