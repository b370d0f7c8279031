using System.CommandLine;
using FineTune.Storage;

namespace FineTune.Cli;

/// <summary><c>finetune cancel|restart|purge RUN</c>: a run stopped, a failed or cancelled run continued, or a run removed.</summary>
internal static class RunControlCommands
{
    public static Command Cancel(TextWriter output, TextWriter error) =>
        ForRun("cancel", "Stop a running run at its next step, checkpointed there (another finetune process, or the --storage backend's).",
            output, error, (runner, job, _, cancellationToken) => runner.CancelAsync(job, cancellationToken));

    public static Command Restart(TextWriter output, TextWriter error) =>
        ForRun("restart", "Continue a failed or cancelled run from its last checkpoint, with the spec its id is bound to.",
            output, error, (runner, job, _, cancellationToken) => runner.RestartAsync(job, cancellationToken));

    public static Command Purge(TextWriter output, TextWriter error) =>
        ForRun("purge", "Delete a run's history and artifacts; its published model stays unless --include-published.",
            output, error, (runner, job, includePublished, cancellationToken) => runner.PurgeAsync(job, includePublished, cancellationToken), withIncludePublished: true);

    private static Command ForRun(string name, string description, TextWriter output, TextWriter error,
        Func<LocalRunner, string, bool, CancellationToken, Task<int>> action, bool withIncludePublished = false)
    {
        var id = new Argument<string>("run") { Description = "A run id." };
        var includePublished = new Option<bool>("--include-published") { Description = "Also delete the published model (kept by default)." };
        var command = new Command(name, description) { id, TrainCommand.Work, TrainCommand.Storage, TrainCommand.TaskHub };
        if (withIncludePublished) command.Add(includePublished);
        command.SetAction(async (result, cancellationToken) =>
        {
            string job = result.GetValue(id)!;
            if (!ArtifactNames.IsValidJobId(job))
            {
                error.WriteLine($"run: '{job}' is not a run id");
                return ExitCodes.BadInput;
            }
            var runner = new LocalRunner(Path.GetFullPath(result.GetValue(TrainCommand.Work)!), result.GetValue(TrainCommand.Storage),
                result.GetValue(TrainCommand.TaskHub)!, output, error);
            return await action(runner, job, withIncludePublished && result.GetValue(includePublished), cancellationToken);
        });
        return command;
    }
}
