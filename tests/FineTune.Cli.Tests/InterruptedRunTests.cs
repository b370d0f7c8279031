using System.Diagnostics;
using System.Globalization;
using System.Text.Json;

namespace FineTune.Cli.Tests;

/// <summary>
/// One run interrupted both ways a user meets, through the command as typed, on a local folder and on Azurite:
/// <c>finetune cancel</c> from another shell stops it at a step with a checkpoint there; <c>finetune restart</c> resumes
/// it, and is killed with -9 mid-training; the same command again resumes it from its last checkpoint and ends with the
/// weights of a run never interrupted, and its published model classifies. (Cancel first: the cancel command takes
/// seconds to start, the kill none, so the run has the most steps left while the cancel is on its way.)
/// </summary>
public sealed class InterruptedRunTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cli-interrupted-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>
    /// Full fine-tuning of the last stage, with augmentation: the uncached path, slow enough to interrupt mid-run. A
    /// checkpoint every step. A .zip: unpacked into the run's scratch, which must leave with the cancelled run.
    /// </summary>
    private static string WriteJob(string dir, string jobId)
    {
        string photos = Path.Combine(dir, "photos.zip");
        System.IO.Compression.ZipFile.CreateFromDirectory(TuxPaintStamps.CreateImageFolder(Path.Combine(dir, "photos"), 8, ["animals", "plants"]), photos);
        File.WriteAllText(Path.Combine(dir, "job.json"), JsonSerializer.Serialize(new
        {
            jobId,
            dataset = new { location = photos, resize = "pad" },
            freeze = "last:1",
            training = new { epochs = 3, batchSize = 4, maxStepsPerChunk = 1, augmentation = new { colorJitter = 0.2 } },
        }));
        return Path.Combine(dir, "photos");
    }

    /// <summary>The published weights of the same job run without interruption, once for both backends (a job id does not change them).</summary>
    private static readonly Lazy<byte[]> Uninterrupted = new(() =>
    {
        string dir = Directory.CreateTempSubdirectory("cli-uninterrupted-").FullName;
        try
        {
            WriteJob(dir, "uninterrupted");
            var straight = FinetuneProcess.Run(dir, "train", "job.json");
            Assert.True(straight.ExitCode == ExitCodes.Succeeded, straight.Error);
            return File.ReadAllBytes(Path.Combine(dir, ".finetune", "artifacts", "runs", "uninterrupted", "published", "model.safetensors"));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    });

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ACancelledRunRestartsAKilledOneResumesAndItEndsWithTheSameWeights(bool onAzurite)
    {
        byte[] expected = Uninterrupted.Value;
        // Unique per run: on Azurite the task hub and artifact container outlive the test.
        string jobId = "interrupted-" + Guid.NewGuid().ToString("N")[..8];
        string photos = WriteJob(_dir, jobId);
        string scratch = Path.Combine(_dir, "work", "cache", "runs", jobId);
        string[] storage = onAzurite ? ["--storage", Azurite.ConnectionString] : [];
        // A task hub of its own: another test's process serving the default hub (finetune serve --storage, in the API tests
        // running beside these) took this run's calls, and its scratch was that process's.
        string[] hub = onAzurite ? [.. storage, "--task-hub", "hub" + Guid.NewGuid().ToString("N")[..12]] : [];
        string[] train = ["train", "job.json", "--work", "work", .. hub];

        // Cancelled from another shell once it has checkpointed: it stops at a step with a checkpoint there.
        using (var victim = Start(train))
        {
            var output = victim.StandardOutput.ReadToEndAsync();
            var error = victim.StandardError.ReadToEndAsync();
            await WaitForCheckpointAsync(jobId, onAzurite, after: 0, victim, error);
            long scratchBytes = Directory.EnumerateFiles(scratch, "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);
            Assert.True(scratchBytes > 100_000, $"{scratchBytes} bytes of scratch");
            var cancel = FinetuneProcess.Run(_dir, ["cancel", jobId, "--work", "work", .. hub]);
            Assert.True(cancel.ExitCode == ExitCodes.Succeeded, cancel.Error);
            Assert.True(victim.WaitForExit(TimeSpan.FromMinutes(2)), "the cancelled run did not stop");
            Assert.Equal(ExitCodes.Failed, victim.ExitCode);
            var (said, errors) = (await output, await error);
            // In-process backend: the chunk's RunCancelledException fails the run; persistent backend: terminated, with the reason.
            Assert.Contains(onAzurite ? "run terminated: cancelled" : "was cancelled; it stopped at step", errors);
            Assert.DoesNotContain("published:", said);
            Assert.False(Directory.Exists(scratch), "the cancelled run's scratch stays");
        }
        long cancelledAt = NewestCheckpoint(jobId, onAzurite);

        // Restarted, then killed with -9 once it has checkpointed past the cancel: it resumed, and dies mid-run.
        using (var restarted = Start(["restart", jobId, "--work", "work", .. hub]))
        {
            await WaitForCheckpointAsync(jobId, onAzurite, after: cancelledAt, restarted);
            Process.Start("kill", ["-9", restarted.Id.ToString(CultureInfo.InvariantCulture)])!.WaitForExit();
            restarted.WaitForExit();
            Assert.Null(Published(jobId, onAzurite));
        }

        // The same command again resumes it from its last checkpoint to the end.
        var resumed = FinetuneProcess.Run(_dir, train);
        Assert.True(resumed.ExitCode == ExitCodes.Succeeded, resumed.Error);
        Assert.Equal(expected, Published(jobId, onAzurite));

        // The published model classifies straight from where it was published.
        string plant = Directory.GetFiles(Path.Combine(photos, "plants"))[0];
        var predicted = FinetuneProcess.Run(_dir, ["predict", "--model", jobId, "--work", "work", "--top", "2", plant, .. storage]);
        Assert.True(predicted.ExitCode == ExitCodes.Succeeded, predicted.Error);
        var answer = JsonDocument.Parse(predicted.Output).RootElement[0].GetProperty("predictions");
        Assert.Equal(2, answer.GetArrayLength());
    }

    private Process Start(string[] arguments)
    {
        var start = new ProcessStartInfo("dotnet") { WorkingDirectory = _dir, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in (string[])[Path.Combine(AppContext.BaseDirectory, "finetune.dll"), .. arguments])
            start.ArgumentList.Add(argument);
        return Process.Start(start)!;
    }

    /// <summary>
    /// Waits, while <paramref name="run"/> lives, for a checkpoint past step <paramref name="after"/>; returns the newest one's
    /// step. A run that ended first fails the test with its exit code and, when given, what it wrote to <paramref name="error"/>.
    /// </summary>
    private async Task<long> WaitForCheckpointAsync(string jobId, bool onAzurite, long after, Process run, Task<string>? error = null)
    {
        var deadline = DateTime.UtcNow.AddMinutes(3);
        long newest;
        while ((newest = NewestCheckpoint(jobId, onAzurite)) <= after)
        {
            if (run.HasExited)
                Assert.Fail($"the run ended (exit {run.ExitCode}) before it checkpointed past step {after}: {(error is null ? "" : await error)}");
            Assert.True(DateTime.UtcNow < deadline, $"the run never checkpointed past step {after}");
            await Task.Delay(50);
        }
        return newest;
    }

    /// <summary>The step of the newest committed checkpoint (its manifest written last), 0 when there is none.</summary>
    private long NewestCheckpoint(string jobId, bool onAzurite)
    {
        string prefix = $"runs/{jobId}/checkpoints/";
        IEnumerable<string> manifests;
        if (onAzurite)
            manifests = Artifacts.Exists() ? Artifacts.GetBlobs(Azure.Storage.Blobs.Models.BlobTraits.None, Azure.Storage.Blobs.Models.BlobStates.None, prefix, default)
                .Select(b => b.Name).Where(n => n.EndsWith("/manifest.json", StringComparison.Ordinal)).ToList() : [];
        else
        {
            string folder = Path.Combine(_dir, "work", "artifacts", prefix);
            manifests = Directory.Exists(folder) ? Directory.GetFiles(folder, "manifest.json", SearchOption.AllDirectories) : [];
        }
        return manifests.Select(m => long.Parse(Path.GetFileName(Path.GetDirectoryName(m))!, CultureInfo.InvariantCulture)).DefaultIfEmpty(0).Max();
    }

    private byte[]? Published(string jobId, bool onAzurite)
    {
        string name = $"runs/{jobId}/published/model.safetensors";
        if (onAzurite)
        {
            var blob = Artifacts.GetBlobClient(name);
            return blob.Exists() ? blob.DownloadContent().Value.Content.ToArray() : null;
        }
        string path = Path.Combine(_dir, "work", "artifacts", name);
        return File.Exists(path) ? File.ReadAllBytes(path) : null;
    }

    /// <summary>The artifact container the command uses with Azurite's connection string.</summary>
    private static readonly Azure.Storage.Blobs.BlobContainerClient Artifacts = new(Azurite.ConnectionString, "finetune");
}
