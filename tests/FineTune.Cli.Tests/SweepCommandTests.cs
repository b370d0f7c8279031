using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Azure.Storage.Blobs;
using FineTune.Workflow.Orchestration;

namespace FineTune.Cli.Tests;

/// <summary><c>finetune sweep</c> and <c>finetune worker</c> as users run them: processes, real photos, Azurite.</summary>
public sealed class SweepCommandTests : IDisposable
{
    private static readonly BlobContainerClient Artifacts = new(Azurite.ConnectionString, "finetune");
    private readonly string _dir = Directory.CreateTempSubdirectory("cli-sweep-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>
    /// An extra worker process joins the task hub: a sweep large enough to be cut into stacks (8 of 32 trials) has them
    /// trained on both processes.
    /// </summary>
    [Fact]
    public void TrialsRunOnEveryWorkerOfTheTaskHub()
    {
        // Unique per test: the task hub and the artifact container outlive it in Azurite.
        string id = "sweep-" + Guid.NewGuid().ToString("N")[..8], hub = "hub" + Guid.NewGuid().ToString("N")[..12];
        // Epochs enough that a stack keeps a process's activity slots busy a few seconds, so the other process takes the next.
        WriteJob(id, trials: 8 * SweepOrchestrator.MaxTrialsPerStack, epochs: 300, parallelism: 4);
        string[] shared = ["--storage", Azurite.ConnectionString, "--task-hub", hub];
        var started = Start(["worker", "--work", "worker", .. shared]);
        using var worker = started.Process;
        var workerLog = started.Log;
        try
        {
            var deadline = DateTime.UtcNow.AddMinutes(1);
            while (!Written(workerLog).Contains("serving task hub " + hub, StringComparison.Ordinal))
            {
                Assert.True(DateTime.UtcNow < deadline && !worker.HasExited, "the worker did not start: " + Written(workerLog));
                Thread.Sleep(50);
            }

            var sweep = FinetuneProcess.Run(_dir, ["sweep", "job.json", "--work", "main", .. shared]);

            Assert.True(sweep.ExitCode == ExitCodes.Succeeded, sweep.Output + sweep.Error + "\nthe worker wrote:\n" + Written(workerLog));
            Assert.Contains($"sweep: {8 * SweepOrchestrator.MaxTrialsPerStack} trials on 2 worker(s), 1 backbone pass(es)", sweep.Output, StringComparison.Ordinal);
            // The blobs a sweep looks for before they exist (its trials' metrics, a cancel request) are no news to its user,
            // and nothing failed on the way (a work item too large for the worker's channel was logged as a failure, then redelivered).
            Assert.DoesNotContain("Azure.Core", sweep.Output + sweep.Error, StringComparison.Ordinal);
            string failures = Failures(sweep.Output + sweep.Error + Written(workerLog));
            Assert.True(failures.Length == 0, failures);
            var report = JsonDocument.Parse(Artifacts.GetBlobClient($"runs/{id}/reports/sweep.json").DownloadContent().Value.Content.ToString()).RootElement;
            var workers = report.GetProperty("trials").EnumerateArray().SelectMany(t => t.GetProperty("workers").EnumerateArray().Select(w => w.GetString())).ToHashSet();
            Assert.Contains(workers, w => w!.EndsWith("/" + worker.Id.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal));
            Assert.Equal(2, workers.Count);
        }
        finally
        {
            worker.Kill(entireProcessTree: true);
            worker.WaitForExit();
        }
    }

    /// <summary>kill -9 in the middle of a sweep and the same command again: the same best trial and byte-identical weights.</summary>
    [Fact]
    public void KilledSweepResumesToTheSameBestModel()
    {
        string id = "sweep-" + Guid.NewGuid().ToString("N")[..8];
        WriteJob(id, trials: 4, epochs: 4, parallelism: 2);
        var straight = FinetuneProcess.Run(_dir, "sweep", "job.json", "--work", "straight");
        Assert.True(straight.ExitCode == ExitCodes.Succeeded, straight.Output + straight.Error);

        using (var victim = Start(["sweep", "job.json", "--work", "killed"]).Process)
        {
            var deadline = DateTime.UtcNow.AddMinutes(3);
            string runs = Path.Combine(_dir, "killed", "artifacts", "runs");
            // Killed once a stack of trials has a checkpoint.
            bool Checkpointed() => Directory.Exists(runs) && Directory.EnumerateDirectories(runs, id + "-s*")
                .Any(stack => Directory.GetFiles(stack, "manifest.json", SearchOption.AllDirectories).Length > 0);
            while (!Checkpointed())
            {
                Assert.True(DateTime.UtcNow < deadline && !victim.HasExited, "no stack of the sweep reached a checkpoint");
                Thread.Sleep(20);
            }
            Process.Start("kill", ["-9", victim.Id.ToString(CultureInfo.InvariantCulture)])!.WaitForExit();
            victim.WaitForExit();
        }
        var resumed = FinetuneProcess.Run(_dir, "sweep", "job.json", "--work", "killed");
        Assert.True(resumed.ExitCode == ExitCodes.Succeeded, resumed.Output + resumed.Error);

        string Best(string work) => JsonDocument.Parse(File.ReadAllText(Path.Combine(_dir, work, "artifacts", "runs", id, "reports", "sweep.json")))
            .RootElement.GetProperty("best").GetString()!;
        string best = Best("straight");
        Assert.Equal(best, Best("killed"));
        byte[] Weights(string work) => File.ReadAllBytes(Path.Combine(_dir, work, "artifacts", "runs", best, "published", "model.safetensors"));
        Assert.Equal(Weights("straight"), Weights("killed"));
    }

    [Fact]
    public void AJobWithoutASweepOrWithABadOneIsBadInput()
    {
        File.WriteAllText(Path.Combine(_dir, "plain.json"), """{ "dataset": { "location": "." } }""");
        var plain = FinetuneProcess.Run(_dir, "sweep", "plain.json");
        Assert.Equal(ExitCodes.BadInput, plain.ExitCode);
        Assert.Contains("\"sweep\" section", plain.Error, StringComparison.Ordinal);

        File.WriteAllText(Path.Combine(_dir, "bad.json"), """{ "dataset": { "location": "." }, "sweep": { "parameters": { "training.lr": [0.1] } } }""");
        var bad = FinetuneProcess.Run(_dir, "sweep", "bad.json");
        Assert.Equal(ExitCodes.BadInput, bad.ExitCode);
        Assert.Contains("sweep.parameters.training.lr: not a job-spec field", bad.Error, StringComparison.Ordinal);

        var worker = FinetuneProcess.Run(_dir, "worker");
        Assert.Equal(ExitCodes.BadInput, worker.ExitCode);
        Assert.Contains("--storage", worker.Error, StringComparison.Ordinal);
    }

    /// <summary>
    /// A head sweep over learning rate (and momentum, for more trials) on three photo categories: a grid up to 8 trials,
    /// random draws from ranges beyond.
    /// </summary>
    private void WriteJob(string id, int trials, int epochs, int parallelism)
    {
        string photos = TuxPaintStamps.CreateImageFolder(Path.Combine(_dir, "photos"), 8, ["animals", "food", "plants"]);
        object rates = trials > 8 ? new { min = 0.0003, max = 0.01, log = true } : new[] { 0.0003, 0.001, 0.003, 0.01 };
        object momenta = trials > 8 ? new { min = 0.8, max = 0.95 } : trials > 4 ? new[] { 0.8, 0.9 } : new[] { 0.9 };
        File.WriteAllText(Path.Combine(_dir, "job.json"), JsonSerializer.Serialize(new
        {
            jobId = id,
            dataset = new { location = photos, resize = "pad" },
            training = new { epochs, batchSize = 4 },
            sweep = new
            {
                method = trials > 8 ? "random" : "grid",
                parameters = new Dictionary<string, object> { ["training.learningRate"] = rates, ["training.momentum"] = momenta },
                maxTrials = trials,
                parallelism,
                metric = "val_accuracy",
            },
        }));
    }

    /// <summary>
    /// A <c>finetune</c> process left running, both outputs read into one log as it writes them: unread, a full pipe would
    /// stop it at its next line, whatever it holds (a worker's trials, then the sweep waiting on them).
    /// </summary>
    private (Process Process, StringBuilder Log) Start(string[] arguments)
    {
        var start = new ProcessStartInfo("dotnet") { WorkingDirectory = _dir, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in (string[])[Path.Combine(AppContext.BaseDirectory, "finetune.dll"), .. arguments]) start.ArgumentList.Add(argument);
        var log = new StringBuilder();
        var process = new Process { StartInfo = start };
        DataReceivedEventHandler append = (_, line) =>
        {
            if (line.Data is not null) lock (log) log.AppendLine(line.Data);
        };
        process.OutputDataReceived += append;
        process.ErrorDataReceived += append;
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return (process, log);
    }

    /// <summary>Each logged failure with the lines that follow it (its message and exception), for the assertion's message.</summary>
    private static string Failures(string log)
    {
        string[] lines = log.Split('\n');
        return string.Join("\n", lines.Select((line, at) => (line, at)).Where(l => l.line.StartsWith("fail:", StringComparison.Ordinal))
            .Select(l => string.Join("\n", lines.Skip(l.at).Take(6))));
    }

    private static string Written(StringBuilder log)
    {
        lock (log) return log.ToString();
    }
}
