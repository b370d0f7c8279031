using FineTune.Cli;
using FineTune.Core.Runtime;

GlibcMalloc.LimitRetainedMemory();
return await FineTuneCommand.RunAsync(args, Console.Out, Console.Error);
