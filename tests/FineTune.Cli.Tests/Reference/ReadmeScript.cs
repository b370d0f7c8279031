using System.Text.Json;
using System.Text.RegularExpressions;

namespace FineTune.Cli.Tests.Reference;

/// <summary>A published README's Python script, run unchanged by Debian's Python from a user's copy of the folder.</summary>
internal static partial class ReadmeScript
{
    /// <returns>per image, each class's probability</returns>
    public static List<Dictionary<string, double>> Run(string published, string copy, IReadOnlyList<string> images)
    {
        Directory.CreateDirectory(copy);
        foreach (var file in Directory.GetFiles(published)) File.Copy(file, Path.Combine(copy, Path.GetFileName(file)), overwrite: true);
        // Beside the script, where Python looks first: the stand-in for pip's safetensors package.
        string shim = Directory.CreateDirectory(Path.Combine(copy, "safetensors")).FullName;
        foreach (var file in Directory.GetFiles(Path.Combine(AppContext.BaseDirectory, "Reference", "safetensors"), "*.py"))
            File.Copy(file, Path.Combine(shim, Path.GetFileName(file)), overwrite: true);
        string readme = File.ReadAllText(Path.Combine(published, "README.md"));
        File.WriteAllText(Path.Combine(copy, "predict.py"), PythonBlock().Match(readme).Groups[1].Value);

        var python = ProcessRunner.Run("/usr/bin/python3", ["predict.py", .. images], copy, TimeSpan.FromMinutes(5));
        if (python.ExitCode != 0) throw new InvalidOperationException($"README script: exit {python.ExitCode}: {python.Error}");
        var lines = python.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(line => JsonDocument.Parse(line).RootElement).ToList();
        if (!lines.Select(l => l.GetProperty("image").GetString()).SequenceEqual(images))
            throw new InvalidOperationException($"README script answered for other images: {python.Output}");
        return lines.Select(l => l.GetProperty("probabilities").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetDouble())).ToList();
    }

    [GeneratedRegex("```python\n(.*?)```", RegexOptions.Singleline)]
    private static partial Regex PythonBlock();
}
