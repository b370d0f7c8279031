using FineTune.Cli;

return await FineTuneCommand.RunAsync(args, Console.Out, Console.Error);
