namespace FineTune.Cli.Tests;

/// <summary>The built <c>finetune</c> command, run as a process the way a user runs it.</summary>
internal static class FinetuneProcess
{
    public static (int ExitCode, string Output, string Error) Run(string workingDirectory, params string[] arguments)
    {
        var result = ProcessRunner.Run("dotnet", [Path.Combine(AppContext.BaseDirectory, "finetune.dll"), .. arguments], workingDirectory, TimeSpan.FromMinutes(5));
        return (result.ExitCode, result.Output, result.Error);
    }
}
