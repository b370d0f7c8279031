using System.CommandLine;
using FineTune.Storage;
using FineTune.Storage.Checkpoints;
using FineTune.Workflow.Services;
using Microsoft.Extensions.Logging.Abstractions;

namespace FineTune.Cli;

/// <summary><c>finetune status [id]</c> and <c>finetune list</c>: runs as their artifacts tell them.</summary>
internal static class StatusCommands
{
    public static Command Status(TextWriter output, TextWriter error)
    {
        var id = new Argument<string?>("id") { Arity = ArgumentArity.ZeroOrOne, Description = "A run id; all runs when absent." };
        var command = new Command("status", "Show a run's progress and results.") { id, TrainCommand.Work, TrainCommand.Storage };
        command.SetAction(async (result, cancellationToken) =>
        {
            var catalog = Catalog(result.GetValue(TrainCommand.Work)!, result.GetValue(TrainCommand.Storage));
            bool all = result.GetValue(id) is null;
            var ids = result.GetValue(id) is { } one ? [one] : await catalog.JobIdsAsync(cancellationToken);
            foreach (var job in ids)
            {
                if (!ArtifactNames.IsValidJobId(job))
                {
                    error.WriteLine($"id: '{job}' is not a run id");
                    return ExitCodes.BadInput;
                }
                var run = await catalog.DescribeAsync(job, cancellationToken);
                if (run is null && !all)
                {
                    error.WriteLine($"run '{job}' has no artifacts here");
                    return ExitCodes.BadInput;
                }
                // All runs: a sweep's internal runs are shown by their sweep.
                if (run is null || (run.PartOf is not null && all)) continue;
                if (run.Sweep is { } sweep)
                {
                    output.WriteLine($"{run.JobId}: sweep, {run.State}, trials {sweep.Finished}/{sweep.Trials} done, {sweep.Running} running"
                        + (sweep.BestTrial is { } best ? $", best {best}: val loss {sweep.BestValidationLoss:F4}, val acc {sweep.BestValidationAccuracy:P1}" : "")
                        + (run.Top1Accuracy is { } bestTop1 ? $", published top-1 {bestTop1:P1}: {run.PublishedModel}" : ""));
                    foreach (var trial in run.Trials ?? [])
                        output.WriteLine($"  {trial.JobId}: {trial.State}, {trial.EpochsDone}/{trial.Epochs} epoch(s)"
                            + (trial.ValidationAccuracy is { } accuracy ? $", last val loss {trial.ValidationLoss:F4}, val acc {accuracy:P1}" : ""));
                    continue;
                }
                output.WriteLine($"{run.JobId}: {run.State}, {run.EpochsDone} epoch(s) done"
                    + (run.PartOf is { } partOf ? $" (an internal run of sweep {partOf})" : "")
                    + (run.LastEpoch is { } last ? $", last epoch: train loss {last.TrainLoss:F4}, val loss {last.ValidationLoss:F4}, val acc {last.ValidationAccuracy:P1}" : "")
                    + (run.Top1Accuracy is { } top1 ? $", published top-1 {top1:P1}: {run.PublishedModel}" : ""));
            }
            return ExitCodes.Succeeded;
        });
        return command;
    }

    public static Command List(TextWriter output)
    {
        var command = new Command("list", "List the runs in the artifact store.") { TrainCommand.Work, TrainCommand.Storage };
        command.SetAction(async (result, cancellationToken) =>
        {
            var catalog = Catalog(result.GetValue(TrainCommand.Work)!, result.GetValue(TrainCommand.Storage));
            foreach (var job in await catalog.JobIdsAsync(cancellationToken))
            {
                var run = await catalog.DescribeAsync(job, cancellationToken);
                if (run is null || run.PartOf is not null) continue;
                output.WriteLine(run.Sweep is { } sweep
                    ? $"{run.JobId,-40} {run.State,-10} {sweep.Finished,4}/{sweep.Trials} trials done (sweep)"
                    : $"{run.JobId,-40} {run.State,-10} {run.EpochsDone,4} epochs");
            }
            return ExitCodes.Succeeded;
        });
        return command;
    }

    private static RunCatalog Catalog(string work, string? storage)
    {
        var store = new ArtifactStoreOptions { LocalRoot = Path.Combine(Path.GetFullPath(work), "artifacts"), ConnectionString = storage }.Create();
        return new RunCatalog(store, new CheckpointStore(store, NullLogger<CheckpointStore>.Instance));
    }
}
