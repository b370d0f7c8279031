using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace FineTune.Bench;

/// <summary>`finetune` as README installs it (`dotnet publish`: compiled ahead of time), so a bench times what users run.</summary>
internal static class InstalledCommand
{
    /// <summary>Publishes the command into <paramref name="folder"/> (not timed: an install); returns its finetune.dll.</summary>
    public static string Publish(string folder)
    {
        using var publish = Process.Start("dotnet", ["publish", Path.Combine(RepositoryRoot(), "src", "FineTune.Cli"), "-r", "linux-x64", "-o", folder,
            "--nologo", "-v", "quiet"])!;
        publish.WaitForExit();
        if (publish.ExitCode != 0) throw new InvalidOperationException($"dotnet publish exited {publish.ExitCode}");
        return Path.Combine(folder, "finetune.dll");
    }

    private static string RepositoryRoot([CallerFilePath] string shared = "") => Path.GetFullPath(Path.Combine(Path.GetDirectoryName(shared)!, "..", ".."));
}
