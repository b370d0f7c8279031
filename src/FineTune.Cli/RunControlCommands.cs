using System.CommandLine;
using FineTune.Storage;

namespace FineTune.Cli;

/// <summary><c>finetune restart RUN</c> and <c>finetune purge RUN</c>: a failed or cancelled run continued, or removed.</summary>
internal static class RunControlCommands
{
    public static Command Restart(TextWriter output, TextWriter error)
    {
        var id = new Argument<string>("run") { Description = "The id of a failed or cancelled run." };
        var command = new Command("restart", "Continue a failed or cancelled run from its last checkpoint, with the spec its id is bound to.")
            { id, TrainCommand.Work, TrainCommand.Storage };
        command.SetAction(async (result, cancellationToken) =>
        {
            string job = result.GetValue(id)!;
            if (!ArtifactNames.IsValidJobId(job))
            {
                error.WriteLine($"run: '{job}' is not a run id");
                return ExitCodes.BadInput;
            }
            return await new LocalRunner(Path.GetFullPath(result.GetValue(TrainCommand.Work)!), result.GetValue(TrainCommand.Storage), output, error)
                .RestartAsync(job, cancellationToken);
        });
        return command;
    }

    public static Command Purge(TextWriter output, TextWriter error)
    {
        var id = new Argument<string>("run") { Description = "The id of a run that is not running." };
        var includePublished = new Option<bool>("--include-published") { Description = "Also delete the published model (kept by default)." };
        var command = new Command("purge", "Delete a run's history and artifacts; its published model stays unless --include-published.")
            { id, includePublished, TrainCommand.Work, TrainCommand.Storage };
        command.SetAction(async (result, cancellationToken) =>
        {
            string job = result.GetValue(id)!;
            if (!ArtifactNames.IsValidJobId(job))
            {
                error.WriteLine($"run: '{job}' is not a run id");
                return ExitCodes.BadInput;
            }
            return await new LocalRunner(Path.GetFullPath(result.GetValue(TrainCommand.Work)!), result.GetValue(TrainCommand.Storage), output, error)
                .PurgeAsync(job, result.GetValue(includePublished), cancellationToken);
        });
        return command;
    }
}
