using System.IO.Compression;
using System.Security.Cryptography;
using System.Text.Json;
using FineTune.Core.Data;
using FineTune.Storage;
using FineTune.Workflow.Jobs;
using FineTune.Workflow.Orchestration;
using FineTune.Workflow.Services;
using Microsoft.DurableTask;
using Microsoft.DurableTask.Client;
using Microsoft.Extensions.DependencyInjection;

namespace FineTune.Workflow.Tests;

/// <summary>
/// What a run leaves on a worker and in the uploads lives as long as the run: scratch goes when it ends or is purged,
/// an upload with the last run naming it, and nothing that failed is remembered past a fix.
/// </summary>
public sealed class RunFilesLifetimeTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(5);

    private static JobSpec Spec(string jobId, string dataset) => JobSpecReader.Read(JsonSerializer.Serialize(new
    {
        jobId,
        dataset = new { location = dataset, resize = "pad" },
        training = new { epochs = 1, batchSize = 4 },
        seed = 11,
    }, WireJson.Options), localPaths: true);

    [Fact]
    public async Task ARunFailingOnItsDatasetRestartedAfterTheFixCompletesAndLeavesNoScratch()
    {
        await using var host = await WorkflowHost.StartAsync();
        var runs = host.Host.Services.GetRequiredService<RunControl>();
        var scratch = host.Host.Services.GetRequiredService<RunScratch>();
        var scheduler = new DurableClientScheduler(host.Host.Client);
        string runsFolder = Path.Combine(host.WorkDirectory, "runs");
        // A .zip upload: the copy and the unpacked folder are the scratch that stayed (2.15 GB a run for a bomb).
        string one = await UploadZipAsync(host, "fixme.zip", "animals");
        var spec = Spec("fixme", one);

        await host.Host.Client.ScheduleNewOrchestrationInstanceAsync(FineTuneOrchestrator.Name, new FineTuneJob("fixme", spec), new StartOrchestrationOptions("fixme"));
        var failed = await host.WaitForEndAsync("fixme", Timeout);

        Assert.Equal(OrchestrationRuntimeStatus.Failed, failed.RuntimeStatus);
        Assert.Contains("only one class (animals)", failed.FailureDetails!.ToString());
        Assert.Equal(0, FolderBytes(runsFolder));

        // The fix: the same blob, now with two classes. The restart must read it, not the failure.
        await UploadZipAsync(host, "fixme.zip", "animals", "food");
        var restart = await runs.RestartAsync(scheduler, "fixme", default);
        Assert.True(restart.Started, restart.ExistingStatus);
        var completed = await host.WaitForEndAsync("fixme", Timeout);

        Assert.Equal(OrchestrationRuntimeStatus.Completed, completed.RuntimeStatus);
        Assert.False(Directory.Exists(scratch.Folder("fixme")));
        Assert.Equal(0, FolderBytes(runsFolder));
        // Files in the reports are named as the user named them, never by this worker's folders.
        string report = await ReadAsync(host.Store, new RunLayout("fixme").Predictions);
        Assert.Contains("blob:datasets/fixme.zip!/", report);
        Assert.DoesNotContain(host.WorkDirectory, report);
    }

    [Fact]
    public async Task AFailedScanIsNotKeptTheNextLoadReadsTheFixedDataset()
    {
        await using var host = await WorkflowHost.StartAsync();
        string folder = Directory.CreateTempSubdirectory("fixable-").FullName;
        try
        {
            HostileFiles.ImageFolder(folder, 3, "a");
            var files = host.Host.Services.GetRequiredService<WorkerFiles>().For(new FineTuneJob("fixable", Spec("fixable", folder)));
            var weights = await AnyWeightsAsync(host);

            var error = await Assert.ThrowsAsync<InvalidDatasetException>(() => files.LoadAsync(weights, null, default));
            Assert.Contains("only one class (a)", error.Message);

            HostileFiles.ImageFolder(folder, 3, "b");
            var loaded = await files.LoadAsync(weights, null, default);
            Assert.Equal(["a", "b"], loaded.Dataset.Classes);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public async Task PurgeRemovesTheRunsScratchAndItsUploadOnlyWithTheLastRunNamingIt()
    {
        await using var host = await WorkflowHost.StartAsync();
        var runs = host.Host.Services.GetRequiredService<RunControl>();
        var scratch = host.Host.Services.GetRequiredService<RunScratch>();
        var scheduler = new DurableClientScheduler(host.Host.Client);
        byte[] zip = Zip("animals", "food");
        string upload = ArtifactNames.UploadedDataset(Convert.ToHexStringLower(SHA256.HashData(zip)));
        await host.Uploads.WriteAsync(upload, new MemoryStream(zip), WriteMode.CreateNew, default);
        string own = await host.UploadDatasetAsync("own", 2);
        await runs.BindSpecAsync("first", Spec("first", "blob:" + upload), default);
        await runs.BindSpecAsync("second", Spec("second", "blob:" + upload), default);
        await runs.BindSpecAsync("mine", Spec("mine", own), default);
        // What an ended run's scratch held, 8 MiB of it.
        Directory.CreateDirectory(Path.Combine(scratch.Folder("first"), "unzipped"));
        await File.WriteAllBytesAsync(Path.Combine(scratch.Folder("first"), "unzipped", "big"), new byte[8 << 20]);
        Assert.Equal(8 << 20, FolderBytes(scratch.Folder("first")));

        var first = await runs.PurgeAsync(scheduler, "first", includePublished: true, default);

        Assert.False(Directory.Exists(scratch.Folder("first")));
        Assert.Null(first.UploadDeleted);
        Assert.True(await host.Uploads.ExistsAsync(upload, default), "the upload went while another run names it");

        var second = await runs.PurgeAsync(scheduler, "second", includePublished: true, default);

        Assert.Equal(upload, second.UploadDeleted);
        Assert.False(await host.Uploads.ExistsAsync(upload, default));
        // A user's own blobs are theirs: purge never removes them.
        Assert.Null((await runs.PurgeAsync(scheduler, "mine", includePublished: true, default)).UploadDeleted);
        Assert.NotEmpty(await NamesAsync(host.Uploads, "datasets/own/"));
    }

    [Fact]
    public async Task WithoutBlobStorageBlobNamesReachTheUploadsFolderNeverTheArtifacts()
    {
        string root = Directory.CreateTempSubdirectory("local-stores-").FullName;
        try
        {
            var options = new ArtifactStoreOptions { LocalRoot = Path.Combine(root, "artifacts"), LocalUploadsRoot = Path.Combine(root, "uploads") };
            var artifacts = options.Create();
            await artifacts.WriteAsync("runs/victim/published/model.safetensors", new MemoryStream([1, 2, 3]), WriteMode.CreateNew, default);

            var uploads = options.CreateUploads(null);

            await Assert.ThrowsAsync<ArtifactNotFoundException>(() => uploads.OpenReadAsync("runs/victim/published/model.safetensors", default));
            Assert.Empty(await NamesAsync(uploads, "runs/"));
            Assert.Equal(Path.Combine(root, "uploads"), options.LocalUploadsRoot);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    /// <summary>Stores a zip of 4 tuxpaint photos per category as upload <c>datasets/NAME</c>; returns its <c>blob:</c> location.</summary>
    private static async Task<string> UploadZipAsync(WorkflowHost host, string name, params string[] categories)
    {
        await host.Uploads.WriteAsync("datasets/" + name, new MemoryStream(Zip(categories)), WriteMode.Overwrite, default);
        return "blob:datasets/" + name;
    }

    private static byte[] Zip(params string[] categories)
    {
        using var file = new MemoryStream();
        using (var zip = new ZipArchive(file, ZipArchiveMode.Create, leaveOpen: true))
            foreach (var category in categories)
                foreach (var (image, i) in TuxPaintStamps.Images(category, 4).Select((image, i) => (image, i)))
                    zip.CreateEntryFromFile(image, $"{category}/{i}.png");
        return file.ToArray();
    }

    private static async Task<Orchestration.WeightsRef> AnyWeightsAsync(WorkflowHost host)
    {
        byte[] bytes = RandomNumberGenerator.GetBytes(100);
        string sha = Convert.ToHexStringLower(SHA256.HashData(bytes));
        string name = ArtifactNames.Weights(sha + ".safetensors");
        await host.Store.WriteAsync(name, new MemoryStream(bytes), WriteMode.Overwrite, default);
        return new Orchestration.WeightsRef(name, sha, "test");
    }

    private static async Task<string> ReadAsync(IArtifactStore store, string name)
    {
        await using var stream = await store.OpenReadAsync(name, default);
        return await new StreamReader(stream).ReadToEndAsync();
    }

    private static async Task<List<string>> NamesAsync(IArtifactStore store, string prefix)
    {
        var names = new List<string>();
        await foreach (var item in store.ListAsync(prefix, default)) names.Add(item.Name);
        return names;
    }

    private static long FolderBytes(string folder) => !Directory.Exists(folder) ? 0
        : Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);
}
