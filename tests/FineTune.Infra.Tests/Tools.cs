using System.Reflection;

namespace FineTune.Infra.Tests;

internal static class Tools
{
    public static string Root => Metadata("RepositoryRoot");
    public static string Bicep => Metadata("Bicep");

    /// <summary>Runs a program to completion in the repository root; returns its exit code and both outputs.</summary>
    public static (int ExitCode, string Output, string Error) Run(string program, params string[] arguments)
    {
        var result = ProcessRunner.Run(program, arguments, Root);
        return (result.ExitCode, result.Output, result.Error);
    }

    private static string Metadata(string key) => typeof(Tools).Assembly
        .GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == key).Value!;
}
