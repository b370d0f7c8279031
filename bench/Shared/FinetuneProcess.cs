using System.Diagnostics;
using System.Globalization;

namespace FineTune.Bench;

/// <summary>`finetune` as its own process, as a user runs it, timed, with its peak resident memory.</summary>
internal static class FinetuneProcess
{
    /// <summary>Wall time and the process's peak resident memory (VmHWM, read until it exits); throws when it fails.</summary>
    public static (double Seconds, long PeakMegabytes, string Stdout) Run(string workingDirectory, params string[] arguments)
    {
        var clock = Stopwatch.StartNew();
        var start = new ProcessStartInfo("dotnet") { WorkingDirectory = workingDirectory, RedirectStandardOutput = true };
        foreach (var argument in (string[])[Path.Combine(AppContext.BaseDirectory, "finetune.dll"), .. arguments]) start.ArgumentList.Add(argument);
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        long peak = 0;
        while (!process.WaitForExit(50))
        {
            try
            {
                var line = File.ReadLines($"/proc/{process.Id}/status").FirstOrDefault(l => l.StartsWith("VmHWM:", StringComparison.Ordinal));
                if (line is not null) peak = Math.Max(peak, long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024);
            }
            catch (IOException)
            {
                // It exited between the check and the read.
            }
        }
        if (process.ExitCode != 0) throw new InvalidOperationException($"finetune {string.Join(' ', arguments)} failed: {output.Result}");
        return (clock.Elapsed.TotalSeconds, peak, output.Result);
    }
}
