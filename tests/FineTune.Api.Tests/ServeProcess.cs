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
    /// <summary>The token it printed in the dashboard's URL (null with <c>--no-auth</c>).</summary>
    public string? Token { get; private set; }
    /// <summary>The dashboard's URL as printed, token included.</summary>
    public Uri DashboardUrl => Token is null ? Url : new Uri(Url, "/?token=" + Token);
    public string WorkDirectory { get; }
    public string ArtifactRoot => Path.Combine(WorkDirectory, "artifacts");
    /// <summary>The server's resident memory now.</summary>
    public long ResidentBytes
    {
        get
        {
            _process.Refresh();
            return _process.WorkingSet64;
        }
    }

    /// <summary>What the server has written to its outputs so far (the per-epoch log lines among them).</summary>
    public string Log { get { lock (_log) return _log.ToString(); } }

    /// <param name="arguments">more options of <c>finetune serve</c> (<c>--max-runs 1</c>)</param>
    public static async Task<ServeProcess> StartAsync(string? storage = null, bool noAuth = false, IReadOnlyList<string>? arguments = null)
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
        if (noAuth) start.ArgumentList.Add("--no-auth");
        foreach (var argument in arguments ?? []) start.ArgumentList.Add(argument);
        var process = Process.Start(start)!;
        var ready = new TaskCompletionSource<Uri>(TaskCreationOptions.RunContinuationsAsynchronously);
        var token = new TaskCompletionSource<string?>(TaskCreationOptions.RunContinuationsAsynchronously);
        var serve = new ServeProcess(process, work);
        void Read(string? line)
        {
            if (line is null) return;
            lock (serve._log) serve._log.AppendLine(line);
            if (Serving().Match(line) is { Success: true } match) ready.TrySetResult(new Uri(match.Groups[1].Value));
            if (Dashboard().Match(line) is { Success: true } dashboard) token.TrySetResult(dashboard.Groups[1].Value);
            // Without a token it warns instead, on stderr, whose lines may come in after stdout's.
            if (noAuth && line.StartsWith("warning: --no-auth", StringComparison.Ordinal)) token.TrySetResult(null);
        }
        process.OutputDataReceived += (_, e) => Read(e.Data);
        process.ErrorDataReceived += (_, e) => Read(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var exited = process.WaitForExitAsync();
        var started = Task.WhenAll(ready.Task, token.Task);
        if (await Task.WhenAny(started, exited, Task.Delay(TimeSpan.FromMinutes(1))) != started)
        {
            process.Kill(entireProcessTree: true);
            throw new InvalidOperationException("finetune serve did not start:\n" + serve.Log);
        }
        serve.Url = await ready.Task;
        serve.Token = await token.Task;
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

    [GeneratedRegex(@"^open the dashboard at http://\S+/\?token=([0-9a-f]+) ")]
    private static partial Regex Dashboard();
}
