using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Azure.Storage.Blobs;
using Azure.Storage.Blobs.Models;

namespace FineTune.Cli.Tests;

/// <summary>
/// A feature pass fanned out across <c>finetune worker</c> processes on Azurite (Workflow:FeaturePassShardImages small, so
/// 24 photos make a dozen shards): the workers share the shards, and the features and published weights equal one process's
/// single pass, also when one worker is killed with -9 mid-pass.
/// </summary>
public sealed class FeaturePassFanOutTests : IDisposable
{
    private const string ShardImages = "2";
    private static readonly BlobContainerClient Artifacts = new(Azurite.ConnectionString, "finetune");
    private readonly string _dir = Directory.CreateTempSubdirectory("cli-fanout-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>One process, the single pass (the default shard size is far above 24 photos): its features by split, and its weights.</summary>
    private static readonly Lazy<(Dictionary<string, byte[]> Features, byte[] Weights)> OneProcess = new(() =>
    {
        string dir = Directory.CreateTempSubdirectory("cli-one-pass-").FullName;
        try
        {
            WriteJob(dir, "one-pass");
            var run = FinetuneProcess.Run(dir, "train", "job.json");
            Assert.True(run.ExitCode == ExitCodes.Succeeded, run.Output + run.Error);
            Assert.DoesNotContain("feature pass: fanned out", run.Output, StringComparison.Ordinal);
            string root = Path.Combine(dir, ".finetune", "artifacts", "runs", "one-pass");
            var shards = Directory.GetFiles(Path.Combine(root, "features")).Select(f => (Path.GetFileName(f), File.ReadAllBytes(f)));
            return (BySplit(shards), File.ReadAllBytes(Path.Combine(root, "published", "model.safetensors")));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    });

    [Fact]
    public void TwoWorkersShareTheShardsOfAPassAndItsFeaturesAreOneProcesss()
    {
        var expected = OneProcess.Value;
        string id = "fanout-" + Guid.NewGuid().ToString("N")[..8], hub = "hub" + Guid.NewGuid().ToString("N")[..12];
        WriteJob(_dir, id);
        using var first = StartWorker(hub, "first");
        using var second = StartWorker(hub, "second");
        try
        {
            var run = Start(["train", "job.json", "--work", "main", .. Shared(hub)]);
            string output = run.StandardOutput.ReadToEnd(), error = run.StandardError.ReadToEnd();
            Assert.True(run.WaitForExit(TimeSpan.FromMinutes(3)) && run.ExitCode == ExitCodes.Succeeded, output + error);

            string workers = output.Split('\n').Single(l => l.StartsWith("feature pass: fanned out", StringComparison.Ordinal));
            foreach (var worker in new[] { first, second })
                Assert.Contains("/" + worker.Id.ToString(CultureInfo.InvariantCulture), workers, StringComparison.Ordinal);
            AssertSameAs(expected, id);
        }
        finally
        {
            Stop(first);
            Stop(second);
        }
    }

    [Fact]
    public async Task AWorkerKilledMidPassHasItsShardsDoneElsewhereAndTheFeaturesAreOneProcesss()
    {
        var expected = OneProcess.Value;
        string id = "fanout-" + Guid.NewGuid().ToString("N")[..8], hub = "hub" + Guid.NewGuid().ToString("N")[..12];
        WriteJob(_dir, id);
        using var victim = StartWorker(hub, "victim");
        using var survivor = StartWorker(hub, "survivor");
        try
        {
            var run = Start(["train", "job.json", "--work", "main", .. Shared(hub)]);
            var output = run.StandardOutput.ReadToEndAsync();
            var error = run.StandardError.ReadToEndAsync();
            // Killed once it has stored a shard of the pass (its copy kept by hash in its scratch): seen killed before it reported
            // that shard (which another worker then computed again) or while computing its next.
            string copies = Path.Combine(_dir, "victim", "cache", "runs", id, "features");
            var deadline = DateTime.UtcNow.AddMinutes(2);
            while (!Directory.Exists(copies) || !Directory.EnumerateFiles(copies).Any(f => !Path.GetFileName(f).StartsWith("outgoing-", StringComparison.Ordinal)))
            {
                Assert.True(DateTime.UtcNow < deadline && !run.HasExited, "the worker stored no shard of the pass");
                Thread.Sleep(20);
            }
            Process.Start("kill", ["-9", victim.Id.ToString(CultureInfo.InvariantCulture)])!.WaitForExit();
            int storedAtKill = ShardNames(id).Count;
            victim.WaitForExit();

            Assert.True(run.WaitForExit(TimeSpan.FromMinutes(3)), "the run did not end");
            string said = await output;
            Assert.True(run.ExitCode == ExitCodes.Succeeded, said + await error);
            int shards = ShardNames(id).Count;
            Assert.True(storedAtKill < shards, $"the pass had stored all {shards} shards when the worker was killed");
            Assert.Contains("feature pass: fanned out", said, StringComparison.Ordinal);
            AssertSameAs(expected, id);
        }
        finally
        {
            Stop(victim);
            Stop(survivor);
        }
    }

    /// <summary>Head training of the default model on three photo categories: its feature pass is the run's backbone work.</summary>
    private static void WriteJob(string dir, string jobId)
    {
        string photos = TuxPaintStamps.CreateImageFolder(Path.Combine(dir, "photos"), 8, ["animals", "food", "plants"]);
        File.WriteAllText(Path.Combine(dir, "job.json"), JsonSerializer.Serialize(new
        {
            jobId,
            dataset = new { location = photos, resize = "pad" },
            training = new { epochs = 2, batchSize = 4 },
        }));
    }

    private static void AssertSameAs((Dictionary<string, byte[]> Features, byte[] Weights) expected, string id)
    {
        var shards = ShardNames(id).Select(name => (name.Split('/')[^1], Artifacts.GetBlobClient(name).DownloadContent().Value.Content.ToArray())).ToList();
        Assert.True(shards.Count > expected.Features.Count, $"{shards.Count} shards: the pass did not fan out");
        var features = BySplit(shards);
        Assert.Equal(expected.Features.Keys.Order(), features.Keys.Order());
        foreach (var (split, rows) in expected.Features)
            Assert.True(rows.AsSpan().SequenceEqual(features[split]), $"{split}'s features differ from one process's");
        Assert.Equal(expected.Weights, Artifacts.GetBlobClient($"runs/{id}/published/model.safetensors").DownloadContent().Value.Content.ToArray());
    }

    /// <summary>Each split's rows, its shards' float data joined in name order (the cut into shards may differ).</summary>
    private static Dictionary<string, byte[]> BySplit(IEnumerable<(string File, byte[] Bytes)> shards) => shards
        .OrderBy(s => s.File, StringComparer.Ordinal)
        .GroupBy(s => s.File.Replace(".safetensors", "", StringComparison.Ordinal)[..^5])
        .ToDictionary(g => g.Key, g => g.SelectMany(s => s.Bytes.Skip(8 + (int)BinaryPrimitives.ReadUInt64LittleEndian(s.Bytes))).ToArray());

    private static List<string> ShardNames(string id) =>
        [.. Artifacts.GetBlobs(BlobTraits.None, BlobStates.None, $"runs/{id}/features/", default).Select(b => b.Name)];

    private static string[] Shared(string hub) => ["--storage", Azurite.ConnectionString, "--task-hub", hub];

    private Process StartWorker(string hub, string work)
    {
        var worker = Start(["worker", "--work", work, .. Shared(hub)]);
        Assert.Contains("serving task hub " + hub, worker.StandardOutput.ReadLine(), StringComparison.Ordinal);
        // Drained, so a worker never blocks on a full pipe.
        _ = worker.StandardOutput.ReadToEndAsync();
        _ = worker.StandardError.ReadToEndAsync();
        return worker;
    }

    private Process Start(string[] arguments)
    {
        var start = new ProcessStartInfo("dotnet") { WorkingDirectory = _dir, RedirectStandardOutput = true, RedirectStandardError = true };
        start.Environment["Workflow__FeaturePassShardImages"] = ShardImages;
        foreach (var argument in (string[])[Path.Combine(AppContext.BaseDirectory, "finetune.dll"), .. arguments]) start.ArgumentList.Add(argument);
        return Process.Start(start)!;
    }

    private static void Stop(Process worker)
    {
        if (!worker.HasExited) worker.Kill(entireProcessTree: true);
        worker.WaitForExit();
    }
}
