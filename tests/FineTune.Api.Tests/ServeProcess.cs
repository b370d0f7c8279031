using System.Diagnostics;
using System.Text.RegularExpressions;

namespace FineTune.Api.Tests;

/// <summary><c>finetune serve --port 0</c> as a user starts it, on a fresh work folder; stopped and cleaned up on dispose.</summary>
public sealed partial class ServeProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly System.Text.StringBuilder _log = new();

    private ServeProcess(Process process, string work)
    {
        _process = process;
        WorkDirectory = work;
    }

    public Uri Url { get; private set; } = null!;
    public string WorkDirectory { get; }
    public string ArtifactRoot => Path.Combine(WorkDirectory, "artifacts");
    /// <summary>What the server has written to its outputs so far (the per-epoch log lines among them).</summary>
    public string Log { get { lock (_log) return _log.ToString(); } }

    public static async Task<ServeProcess> StartAsync(string? storage = null)
    {
        if (storage is not null) Azurite.RequireRunning();
        string work = Directory.CreateTempSubdirectory("serve-").FullName;
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in (string[])[Path.Combine(AppContext.BaseDirectory, "finetune.dll"), "serve", "--port", "0", "--work", work])
            start.ArgumentList.Add(argument);
        if (storage is not null)
        {
            start.ArgumentList.Add("--storage");
            start.ArgumentList.Add(storage);
        }
        var process = Process.Start(start)!;
        var ready = new TaskCompletionSource<Uri>(TaskCreationOptions.RunContinuationsAsynchronously);
        var serve = new ServeProcess(process, work);
        void Read(string? line)
        {
            if (line is null) return;
            lock (serve._log) serve._log.AppendLine(line);
            if (Serving().Match(line) is { Success: true } match) ready.TrySetResult(new Uri(match.Groups[1].Value));
        }
        process.OutputDataReceived += (_, e) => Read(e.Data);
        process.ErrorDataReceived += (_, e) => Read(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var exited = process.WaitForExitAsync();
        if (await Task.WhenAny(ready.Task, exited, Task.Delay(TimeSpan.FromMinutes(1))) != ready.Task)
        {
            process.Kill(entireProcessTree: true);
            throw new InvalidOperationException("finetune serve did not start:\n" + serve.Log);
        }
        serve.Url = await ready.Task;
        return serve;
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        await _process.WaitForExitAsync();
        _process.Dispose();
        Directory.Delete(WorkDirectory, recursive: true);
    }

    [GeneratedRegex(@"^serving (http://\S+?)/? ")]
    private static partial Regex Serving();
}
