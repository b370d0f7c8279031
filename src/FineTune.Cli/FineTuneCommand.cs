using System.CommandLine;
using System.CommandLine.Invocation;

namespace FineTune.Cli;

/// <summary>The <c>finetune</c> command line.</summary>
public static class FineTuneCommand
{
    public static RootCommand Create(TextWriter output, TextWriter error) => new("Fine-tune pretrained vision models on your own images.")
    {
        ModelsCommand.Create(output),
        TrainCommand.Create(output, error),
        SweepCommand.Create(output, error),
        WorkerCommand.Create(output, error),
        DemoCommand.Create(output, error),
        PredictCommand.Create(output, error),
        ExportCommand.Create(output, error),
        StatusCommands.Status(output, error),
        StatusCommands.List(output),
        RunControlCommands.Cancel(output, error),
        RunControlCommands.Restart(output, error),
        RunControlCommands.Purge(output, error),
        SchemaCommand.Create(output),
        ServeCommand.Create(output, error),
    };

    public static async Task<int> RunAsync(string[] args, TextWriter output, TextWriter error)
    {
        var parsed = Create(output, error).Parse(args);
        // A mistyped command line is bad input like a bad job spec: exit 2, each problem on its own line
        // (not the library's exit 1 with the whole help page, where the reason scrolls away).
        if (parsed.Errors.Count > 0 && parsed.Action is ParseErrorAction)
        {
            foreach (var problem in parsed.Errors) error.WriteLine(problem.Message);
            string command = parsed.CommandResult.Command is RootCommand ? "finetune" : $"finetune {parsed.CommandResult.Command.Name}";
            error.WriteLine($"see '{command} --help'");
            return ExitCodes.BadInput;
        }
        return await parsed.InvokeAsync(new InvocationConfiguration { Output = output, Error = error });
    }
}
