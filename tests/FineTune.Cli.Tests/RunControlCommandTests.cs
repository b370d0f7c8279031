namespace FineTune.Cli.Tests;

/// <summary>A job id is bound to its spec, and <c>finetune restart</c> and <c>purge</c>, through the command a user types.</summary>
public sealed class RunControlCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cli-control-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void AJobIdReusedWithAnotherDatasetIsRefusedUntilTheRunIsPurged()
    {
        string first = Photos("first", 5), second = Photos("second", 6);
        string[] train = ["train", "--job-id", "ckpt", "--epochs", "1", "--batch-size", "4"];

        var trained = FinetuneProcess.Run(_dir, [.. train, "--dataset", first]);
        Assert.True(trained.ExitCode == ExitCodes.Succeeded, trained.Error);

        var reused = FinetuneProcess.Run(_dir, [.. train, "--dataset", second]);
        Assert.Equal(ExitCodes.BadInput, reused.ExitCode);
        Assert.Matches(@"job id 'ckpt' is bound to spec sha256:[0-9a-f]{64}, not to this spec \(sha256:[0-9a-f]{64}\)", reused.Error);

        var restart = FinetuneProcess.Run(_dir, "restart", "ckpt");
        Assert.Equal(ExitCodes.BadInput, restart.ExitCode);
        Assert.Contains("has already published its model", restart.Error);

        string published = Path.Combine(_dir, ".finetune", "artifacts", "runs", "ckpt", "published", "model.safetensors");
        var purged = FinetuneProcess.Run(_dir, "purge", "ckpt");
        Assert.True(purged.ExitCode == ExitCodes.Succeeded, purged.Error);
        Assert.Contains("its published model stays", purged.Output);
        Assert.True(File.Exists(published));
        Assert.False(Directory.Exists(Path.Combine(_dir, ".finetune", "artifacts", "runs", "ckpt", "checkpoints")));

        Assert.Equal(ExitCodes.BadInput, FinetuneProcess.Run(_dir, [.. train, "--dataset", second]).ExitCode);
        Assert.Equal(ExitCodes.Succeeded, FinetuneProcess.Run(_dir, "purge", "ckpt", "--include-published").ExitCode);
        Assert.False(File.Exists(published));

        var again = FinetuneProcess.Run(_dir, [.. train, "--dataset", second]);
        Assert.True(again.ExitCode == ExitCodes.Succeeded, again.Error);
        Assert.Equal(ExitCodes.BadInput, FinetuneProcess.Run(_dir, "restart", "never-ran").ExitCode);
    }

    private string Photos(string name, int perClass) =>
        TuxPaintStamps.CreateImageFolder(Path.Combine(_dir, name), perClass, ["animals", "plants"]);
}
