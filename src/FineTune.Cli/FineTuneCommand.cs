using System.CommandLine;

namespace FineTune.Cli;

/// <summary>The <c>finetune</c> command line.</summary>
public static class FineTuneCommand
{
    public static async Task<int> RunAsync(string[] args, TextWriter output, TextWriter error)
    {
        var root = new RootCommand("Fine-tune pretrained vision models on your own images.")
        {
            ModelsCommand.Create(output),
            TrainCommand.Create(output, error),
            DemoCommand.Create(output, error),
            PredictCommand.Create(output, error),
            StatusCommands.Status(output, error),
            StatusCommands.List(output),
            RunControlCommands.Cancel(output, error),
            RunControlCommands.Restart(output, error),
            RunControlCommands.Purge(output, error),
        };
        var configuration = new InvocationConfiguration { Output = output, Error = error };
        return await root.Parse(args).InvokeAsync(configuration);
    }
}
