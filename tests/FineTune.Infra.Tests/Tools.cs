using System.Diagnostics;
using System.Reflection;

namespace FineTune.Infra.Tests;

internal static class Tools
{
    public static string Root => Metadata("RepositoryRoot");
    public static string Bicep => Metadata("Bicep");

    /// <summary>Runs a program to completion; returns its exit code and both outputs.</summary>
    public static (int ExitCode, string Output, string Error) Run(string program, params string[] arguments)
    {
        var start = new ProcessStartInfo(program) { WorkingDirectory = Root, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        using var process = Process.Start(start)!;
        var error = process.StandardError.ReadToEndAsync();
        string output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, output, error.Result);
    }

    private static string Metadata(string key) => typeof(Tools).Assembly
        .GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == key).Value!;
}
