using System.CommandLine;

namespace FineTune.Cli;

/// <summary>
/// <c>finetune worker --storage CONN</c>: one more process serving the task hub, as Azure adds instances to a scaled-out
/// Functions app: the trials of a sweep (and the activities of any run) on that hub spread over every worker.
/// </summary>
internal static class WorkerCommand
{
    public static Command Create(TextWriter output, TextWriter error)
    {
        var command = new Command("worker", "Serve a task hub in a storage account: run other processes' runs and sweep trials until stopped.")
        {
            TrainCommand.Work, TrainCommand.Storage, TrainCommand.TaskHub,
        };
        command.SetAction((result, cancellationToken) => TrainCommand.Runner(result, output, error).ServeAsync(cancellationToken));
        return command;
    }
}
