using System.Diagnostics;

namespace FineTune.Cli.Tests;

/// <summary>
/// <c>finetune cancel</c> from another shell while a run trains: the run stops at a step with a checkpoint there, and
/// <c>finetune restart</c> ends with the weights of a run never cancelled. Local folder and Azurite.
/// </summary>
public sealed class CancelAndRestartTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cli-cancel-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ACancelledRunRestartsToTheSameWeights(bool onAzurite)
    {
        // A .zip: unpacked into the run's scratch, which must leave with the cancelled run.
        string photos = Path.Combine(_dir, "photos.zip");
        System.IO.Compression.ZipFile.CreateFromDirectory(TuxPaintStamps.CreateImageFolder(Path.Combine(_dir, "photos"), 8, ["animals", "plants"]), photos);
        // Unique per run: on Azurite the task hub and artifact container outlive the test.
        string jobId = "halted-" + Guid.NewGuid().ToString("N")[..8];
        string scratch = Path.Combine(_dir, "cancelled", "cache", "runs", jobId);
        string[] storage = onAzurite ? ["--storage", Azurite.ConnectionString] : [];
        // Full fine-tuning of the last stage, with augmentation: the uncached path, slow enough to cancel mid-run.
        File.WriteAllText(Path.Combine(_dir, "job.json"), System.Text.Json.JsonSerializer.Serialize(new
        {
            jobId,
            dataset = new { location = photos, resize = "pad" },
            freeze = "last:1",
            training = new { epochs = 6, batchSize = 4, maxStepsPerChunk = 3, augmentation = new { colorJitter = 0.2 } },
        }));

        var straight = FinetuneProcess.Run(_dir, "train", "job.json", "--work", "straight");
        Assert.True(straight.ExitCode == ExitCodes.Succeeded, straight.Error);

        var start = new ProcessStartInfo("dotnet") { WorkingDirectory = _dir, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in (string[])[Path.Combine(AppContext.BaseDirectory, "finetune.dll"), "train", "job.json", "--work", "cancelled", .. storage])
            start.ArgumentList.Add(argument);
        using (var victim = Process.Start(start)!)
        {
            var output = victim.StandardOutput.ReadToEndAsync();
            var error = victim.StandardError.ReadToEndAsync();
            var deadline = DateTime.UtcNow.AddMinutes(3);
            while (!Checkpointed(jobId, onAzurite))
            {
                Assert.True(DateTime.UtcNow < deadline && !victim.HasExited, "the run never reached its first checkpoint");
                await Task.Delay(100);
            }
            long scratchBytes = Directory.EnumerateFiles(scratch, "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);
            Assert.True(scratchBytes > 100_000, $"{scratchBytes} bytes of scratch");
            var cancel = FinetuneProcess.Run(_dir, ["cancel", jobId, "--work", "cancelled", .. storage]);
            Assert.True(cancel.ExitCode == ExitCodes.Succeeded, cancel.Error);
            Assert.True(victim.WaitForExit(TimeSpan.FromMinutes(2)), "the cancelled run did not stop");
            Assert.Equal(ExitCodes.Failed, victim.ExitCode);
            var (said, errors) = (await output, await error);
            // In-process backend: the chunk's RunCancelledException fails the run; persistent backend: terminated, with the reason.
            Assert.Contains(onAzurite ? "run terminated: cancelled" : "was cancelled; it stopped at step", errors);
            Assert.DoesNotContain("published:", said);
            Assert.False(Directory.Exists(scratch), "the cancelled run's scratch stays");
        }

        var restarted = FinetuneProcess.Run(_dir, ["restart", jobId, "--work", "cancelled", .. storage]);
        Assert.True(restarted.ExitCode == ExitCodes.Succeeded, restarted.Error);
        Assert.Equal(Published(jobId, onAzurite: false, "straight"), Published(jobId, onAzurite, "cancelled"));
    }

    private bool Checkpointed(string jobId, bool onAzurite)
    {
        string prefix = $"runs/{jobId}/checkpoints/";
        if (onAzurite)
            return Artifacts.Exists() && Artifacts.GetBlobs(Azure.Storage.Blobs.Models.BlobTraits.None, Azure.Storage.Blobs.Models.BlobStates.None, prefix, default)
                .Any(b => b.Name.EndsWith("/manifest.json", StringComparison.Ordinal));
        string folder = Path.Combine(_dir, "cancelled", "artifacts", prefix);
        return Directory.Exists(folder) && Directory.GetFiles(folder, "manifest.json", SearchOption.AllDirectories).Length > 0;
    }

    private byte[]? Published(string jobId, bool onAzurite, string work)
    {
        string name = $"runs/{jobId}/published/model.safetensors";
        if (onAzurite)
        {
            var blob = Artifacts.GetBlobClient(name);
            return blob.Exists() ? blob.DownloadContent().Value.Content.ToArray() : null;
        }
        string path = Path.Combine(_dir, work, "artifacts", name);
        return File.Exists(path) ? File.ReadAllBytes(path) : null;
    }

    /// <summary>The artifact container the command uses with Azurite's connection string.</summary>
    private static readonly Azure.Storage.Blobs.BlobContainerClient Artifacts = new(Azurite.ConnectionString, "finetune");
}
