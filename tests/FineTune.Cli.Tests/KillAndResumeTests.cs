using System.Diagnostics;
using System.Text.Json;

namespace FineTune.Cli.Tests;

/// <summary>kill -9 in the middle of training, then the same command again: it resumes from the last checkpoint and ends with the same weights.</summary>
public sealed class KillAndResumeTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cli-kill-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void KilledRunResumesToTheSameWeights()
    {
        var photos = Directory.CreateDirectory(Path.Combine(_dir, "photos")).FullName;
        foreach (var category in new[] { "animals", "plants" })
        {
            var folder = Directory.CreateDirectory(Path.Combine(photos, category)).FullName;
            foreach (var photo in Directory.GetFiles(Path.Combine("/usr/share/tuxpaint/stamps", category), "*.png", SearchOption.AllDirectories)
                .Where(p => !p.Contains("/cartoon/")).Order(StringComparer.Ordinal).Take(8))
                File.CreateSymbolicLink(Path.Combine(folder, Path.GetFileName(photo)), photo);
        }
        // Full fine-tuning of the last stage, with augmentation: the uncached path, slow enough to be killed mid-run.
        File.WriteAllText(Path.Combine(_dir, "job.json"), JsonSerializer.Serialize(new
        {
            jobId = "killed",
            dataset = new { location = photos, resize = "pad" },
            freeze = "last:1",
            training = new { epochs = 3, batchSize = 4, maxStepsPerChunk = 1, augmentation = new { colorJitter = 0.2 } },
        }));

        var straight = FinetuneProcess.Run(_dir, "train", "job.json", "--work", "straight");
        Assert.True(straight.ExitCode == 0, straight.Error);

        var start = new ProcessStartInfo("dotnet") { WorkingDirectory = _dir, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in new[] { Path.Combine(AppContext.BaseDirectory, "finetune.dll"), "train", "job.json", "--work", "killed" })
            start.ArgumentList.Add(argument);
        using (var victim = Process.Start(start)!)
        {
            string checkpoints = Path.Combine(_dir, "killed", "artifacts", "runs", "killed", "checkpoints");
            var deadline = DateTime.UtcNow.AddMinutes(3);
            while (!(Directory.Exists(checkpoints) && Directory.GetFiles(checkpoints, "manifest.json", SearchOption.AllDirectories).Length >= 3))
            {
                Assert.True(DateTime.UtcNow < deadline && !victim.HasExited, "the run never reached its third checkpoint");
                Thread.Sleep(50);
            }
            Process.Start("kill", ["-9", victim.Id.ToString()])!.WaitForExit();
            victim.WaitForExit();
            Assert.False(File.Exists(Path.Combine(_dir, "killed", "artifacts", "runs", "killed", "published", "model.safetensors")));
        }

        var resumed = FinetuneProcess.Run(_dir, "train", "job.json", "--work", "killed");
        Assert.True(resumed.ExitCode == 0, resumed.Error);

        Assert.Equal(
            File.ReadAllBytes(Path.Combine(_dir, "straight", "artifacts", "runs", "killed", "published", "model.safetensors")),
            File.ReadAllBytes(Path.Combine(_dir, "killed", "artifacts", "runs", "killed", "published", "model.safetensors")));
    }
}
