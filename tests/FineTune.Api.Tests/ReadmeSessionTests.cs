namespace FineTune.Api.Tests;

/// <summary>README's curl session, run by bash as written, against a <c>finetune serve</c> of its own.</summary>
public sealed class ReadmeSessionTests
{
    private const string Heading = "A session against `finetune serve`";
    private const string DocumentedUrl = "http://127.0.0.1:5080";
    /// <summary>Where README's session reads serve's token: the default work folder's token file.</summary>
    private const string DocumentedTokenFile = ".finetune/" + LocalAccess.TokenFileName;

    [Fact]
    public async Task TheCurlSessionWorksAsWritten()
    {
        await using var serve = await ServeProcess.StartAsync();
        string readme = await File.ReadAllTextAsync(Path.Combine(RepositoryRoot(), "README.md"));
        var lines = readme[readme.IndexOf(Heading, StringComparison.Ordinal)..].Split('\n').Skip(1)
            .SkipWhile(line => !line.StartsWith("    ", StringComparison.Ordinal))
            .TakeWhile(line => line.Length == 0 || line.StartsWith("    ", StringComparison.Ordinal))
            .Select(line => line.Length == 0 ? line : line[4..]).ToList();
        // The first line starts the server: this test has started one, on a free port.
        Assert.StartsWith("dotnet run --project src/FineTune.Cli -- serve", lines[0], StringComparison.Ordinal);
        // This server's URL and work folder in place of the documented ones; every request of the session carries the token.
        string script = "set -euo pipefail\n" + string.Join('\n', lines.Skip(1)).Replace(DocumentedUrl, serve.Url.ToString().TrimEnd('/'), StringComparison.Ordinal)
            .Replace(DocumentedTokenFile, Path.Combine(serve.WorkDirectory, LocalAccess.TokenFileName), StringComparison.Ordinal);
        Assert.All(lines.Where(line => line.Contains("curl ", StringComparison.Ordinal)), line => Assert.Contains("-H \"$auth\"", line, StringComparison.Ordinal));
        string folder = Directory.CreateDirectory(Path.Combine(serve.WorkDirectory, "session")).FullName;
        await File.WriteAllTextAsync(Path.Combine(folder, "session.sh"), script);

        var result = ProcessRunner.Run("bash", ["session.sh"], folder, TimeSpan.FromMinutes(5));

        Assert.True(result.ExitCode == 0, result.Output + result.Error);
        Assert.Contains("\"id\":\"pets-1\"", result.Output, StringComparison.Ordinal);
        Assert.Contains("Retry-After: 2", result.Output, StringComparison.Ordinal);
        Assert.Contains("\"status\":\"Completed\"", result.Output, StringComparison.Ordinal);
        Assert.Contains("\"epoch\":3", result.Output, StringComparison.Ordinal);
        Assert.Contains("\"class\":\"animals\"", result.Output, StringComparison.Ordinal);
        Assert.True(new FileInfo(Path.Combine(folder, "pets-1-model.safetensors")).Length > 1_000_000);
    }

    private static string RepositoryRoot()
    {
        var folder = new DirectoryInfo(AppContext.BaseDirectory);
        while (folder is not null && !File.Exists(Path.Combine(folder.FullName, "FineTuneFunctions.sln"))) folder = folder.Parent;
        return folder?.FullName ?? throw new InvalidOperationException("the repository root is not above " + AppContext.BaseDirectory);
    }
}
