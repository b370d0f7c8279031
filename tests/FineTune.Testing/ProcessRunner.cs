using System.Diagnostics;

namespace FineTune.Testing;

/// <summary>A program's exit code and both outputs.</summary>
public sealed record ProcessResult(int ExitCode, string Output, string Error);

/// <summary>Runs a program to completion, as a user's shell would, with both outputs captured.</summary>
public static class ProcessRunner
{
    public static ProcessResult Run(string program, IEnumerable<string> arguments, string? workingDirectory = null, TimeSpan? timeout = null)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true };
        if (workingDirectory is not null) start.WorkingDirectory = workingDirectory;
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"cannot start {program}");
        // Both outputs read while waiting: reading one to its end first would wait as long as the program runs, past the timeout.
        var error = process.StandardError.ReadToEndAsync();
        var output = process.StandardOutput.ReadToEndAsync();
        if (!process.WaitForExit(timeout ?? Timeout.InfiniteTimeSpan))
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit();
            throw new TimeoutException($"{program} {string.Join(' ', arguments)} did not finish in {timeout}; it wrote:{Environment.NewLine}{output.Result}{error.Result}");
        }
        return new ProcessResult(process.ExitCode, output.Result, error.Result);
    }
}
