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
            var ids = result.GetValue(id) is { } one ? [one] : await catalog.JobIdsAsync(cancellationToken);
            foreach (var job in ids)
            {
                if (!ArtifactNames.IsValidJobId(job))
                {
                    error.WriteLine($"id: '{job}' is not a run id");
                    return ExitCodes.BadInput;
                }
                var run = await catalog.DescribeAsync(job, cancellationToken);
                if (run is null)
                {
                    error.WriteLine($"run '{job}' has no artifacts here");
                    return ExitCodes.BadInput;
                }
                output.WriteLine($"{run.JobId}: {run.State}, {run.EpochsDone} epoch(s) done"
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
                if (run is not null) output.WriteLine($"{run.JobId,-40} {run.State,-10} {run.EpochsDone,4} epochs");
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
