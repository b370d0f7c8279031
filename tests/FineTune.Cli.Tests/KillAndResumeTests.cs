using System.Globalization;
using System.Diagnostics;
using System.Text.Json;

namespace FineTune.Cli.Tests;

/// <summary>kill -9 in the middle of training, then the same command again: it resumes from the last checkpoint and ends with the same weights.</summary>
public sealed class KillAndResumeTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cli-kill-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void KilledRunResumesToTheSameWeights(bool onAzurite)
    {
        string photos = TuxPaintStamps.CreateImageFolder(Path.Combine(_dir, "photos"), 8, ["animals", "plants"]);
        // Full fine-tuning of the last stage, with augmentation: the uncached path, slow enough to be killed mid-run.
        // Unique per run: on Azurite the task hub and artifact container outlive the test.
        string jobId = "killed-" + Guid.NewGuid().ToString("N")[..8];
        string[] storage = onAzurite ? ["--storage", Azurite.ConnectionString] : [];
        File.WriteAllText(Path.Combine(_dir, "job.json"), JsonSerializer.Serialize(new
        {
            jobId,
            dataset = new { location = photos, resize = "pad" },
            freeze = "last:1",
            training = new { epochs = 3, batchSize = 4, maxStepsPerChunk = 1, augmentation = new { colorJitter = 0.2 } },
        }));

        var straight = FinetuneProcess.Run(_dir, "train", "job.json", "--work", "straight");
        Assert.True(straight.ExitCode == ExitCodes.Succeeded, straight.Error);

        var start = new ProcessStartInfo("dotnet") { WorkingDirectory = _dir, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in (string[])[Path.Combine(AppContext.BaseDirectory, "finetune.dll"), "train", "job.json", "--work", "killed", .. storage])
            start.ArgumentList.Add(argument);
        using (var victim = Process.Start(start)!)
        {
            var deadline = DateTime.UtcNow.AddMinutes(3);
            while (Checkpoints(jobId, onAzurite) < 3)
            {
                Assert.True(DateTime.UtcNow < deadline && !victim.HasExited, "the run never reached its third checkpoint");
                Thread.Sleep(50);
            }
            Process.Start("kill", ["-9", victim.Id.ToString(CultureInfo.InvariantCulture)])!.WaitForExit();
            victim.WaitForExit();
            Assert.Null(Published(jobId, onAzurite, "killed"));
        }

        var resumed = FinetuneProcess.Run(_dir, ["train", "job.json", "--work", "killed", .. storage]);
        Assert.True(resumed.ExitCode == ExitCodes.Succeeded, resumed.Error);

        Assert.Equal(Published(jobId, onAzurite: false, "straight"), Published(jobId, onAzurite, "killed"));

        // The published model classifies straight from where it was published.
        string plant = Directory.GetFiles(Path.Combine(photos, "plants"))[0];
        var predicted = FinetuneProcess.Run(_dir, ["predict", "--model", jobId, "--work", "killed", "--top", "2", plant, .. storage]);
        Assert.True(predicted.ExitCode == ExitCodes.Succeeded, predicted.Error);
        var answer = JsonDocument.Parse(predicted.Output).RootElement[0].GetProperty("predictions");
        Assert.Equal(2, answer.GetArrayLength());
    }

    private int Checkpoints(string jobId, bool onAzurite)
    {
        string prefix = $"runs/{jobId}/checkpoints/";
        if (onAzurite)
            return Artifacts.Exists() ? Artifacts.GetBlobs(Azure.Storage.Blobs.Models.BlobTraits.None, Azure.Storage.Blobs.Models.BlobStates.None, prefix, default)
                .Count(b => b.Name.EndsWith("/manifest.json", StringComparison.Ordinal)) : 0;
        string folder = Path.Combine(_dir, "killed", "artifacts", prefix);
        return Directory.Exists(folder) ? Directory.GetFiles(folder, "manifest.json", SearchOption.AllDirectories).Length : 0;
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
