using FineTune.Cli;
using FineTune.Core.Runtime;

// Every host this process builds (the run's, the in-memory backend's sidecar, `serve`'s) reads its configuration once:
// by default each would watch its content root, the working folder, with a watch on every folder below it (started from
// /tmp here: 6,500 inotify watches; from a home folder, all of it).
if (Environment.GetEnvironmentVariable("DOTNET_hostBuilder__reloadConfigOnChange") is null)
    Environment.SetEnvironmentVariable("DOTNET_hostBuilder__reloadConfigOnChange", "false");
GlibcMalloc.LimitRetainedMemory();
return await FineTuneCommand.RunAsync(args, Console.Out, Console.Error);
