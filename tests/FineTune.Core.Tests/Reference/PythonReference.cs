using System.Diagnostics;

namespace FineTune.Core.Tests.Reference;

/// <summary>Runs the PyTorch reference (Debian's python3-torch, which .ci/run installs) as a process.</summary>
internal static class PythonReference
{
    private const string Interpreter = "/usr/bin/python3";

    public static string Script => Path.Combine(AppContext.BaseDirectory, "Reference", "torchvision_reference.py");

    public static string Run(params string[] arguments) => RunScript(Script, arguments);

    public static string RunScript(string script, params string[] arguments)
    {
        var start = new ProcessStartInfo(Interpreter) { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(script);
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"cannot start {Interpreter}");
        var stderr = process.StandardError.ReadToEndAsync();
        string stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
            throw new InvalidOperationException(
                $"{Interpreter} {string.Join(' ', arguments)} failed ({process.ExitCode}); is python3-torchvision installed?\n{stderr.Result}");
        return stdout.Trim();
    }
}
