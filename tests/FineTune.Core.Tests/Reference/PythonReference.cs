namespace FineTune.Core.Tests.Reference;

/// <summary>Runs the PyTorch reference (Debian's python3-torch, which .ci/run installs) as a process.</summary>
internal static class PythonReference
{
    private const string Interpreter = "/usr/bin/python3";

    public static string Script => Path.Combine(AppContext.BaseDirectory, "Reference", "torchvision_reference.py");

    public static string Run(params string[] arguments) => RunScript(Script, arguments);

    public static string RunScript(string script, params string[] arguments)
    {
        var result = ProcessRunner.Run(Interpreter, [script, .. arguments]);
        if (result.ExitCode != 0)
            throw new InvalidOperationException(
                $"{Interpreter} {string.Join(' ', arguments)} failed ({result.ExitCode}); is python3-torchvision installed?\n{result.Error}");
        return result.Output.Trim();
    }
}
