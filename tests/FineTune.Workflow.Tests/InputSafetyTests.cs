using System.Security.Cryptography;
using System.Text.Json;
using FineTune.Core.Data;
using FineTune.Core.Evaluation;
using FineTune.Core.Weights;
using FineTune.Storage;
using FineTune.Workflow.Jobs;
using FineTune.Workflow.Orchestration;
using FineTune.Workflow.Services;
using Microsoft.DurableTask;
using Microsoft.Extensions.DependencyInjection;
using SkiaSharp;

namespace FineTune.Workflow.Tests;

public sealed class InputSafetyTests
{
    [Theory]
    [InlineData(3, 390, 370)]
    [InlineData(120, 1000, 760)]
    [InlineData(1000, 1000, 760)]
    public void ConfusionPlotStaysReadableAndSmallForManyClasses(int classes, int width, int height)
    {
        var names = Enumerable.Range(0, classes).Select(i => $"class{i}").ToList();
        // Each class mistaken for the next once, class 7 for class 8 five times.
        var matrix = names.Select((_, t) => (IReadOnlyList<int>)names.Select((_, p) => p == t ? 9 : p == (t + 1) % classes ? (t == 7 ? 5 : 1) : 0).ToList()).ToList();
        var report = new EvaluationReport("validation", classes * 10, 0.5, 0.9, null, names, [], matrix, []);

        using var png = SKBitmap.Decode(ReportPlots.Confusion(report));

        Assert.Equal(width, png.Width);
        Assert.Equal(height, png.Height);
    }

    [Fact]
    public void ErrorKindIsBadInputWhenAnyLevelOfTheFailureIsBadInput()
    {
        var activity = new TaskFailureDetails(typeof(InvalidDatasetException).FullName!, "only one class (food)", null, null, null);
        var orchestration = new TaskFailureDetails(typeof(TaskFailedException).FullName!, "Task 'PrepareModel' (#1) failed", null, activity, null);

        Assert.Equal(ErrorKinds.BadInput, ErrorKinds.Of(orchestration));
        Assert.Equal(ErrorKinds.System, ErrorKinds.Of(new TaskFailureDetails(typeof(IOException).FullName!, "disk full", null, null, null)));
        // SocketException as a process that has used sockets sees it: System.Net.Sockets, loaded, forwards it to its assembly.
        _ = typeof(System.Net.Sockets.Socket);
        var reset = new TaskFailureDetails(typeof(System.Net.Sockets.SocketException).FullName!, "Transport endpoint is not connected", null, null, null);
        Assert.Equal(ErrorKinds.System, ErrorKinds.Of(new TaskFailureDetails(typeof(TaskFailedException).FullName!, "Task 'TrainEpoch' (#4) failed", null, reset, null)));
        Assert.Null(ErrorKinds.Of((TaskFailureDetails?)null));
    }

    [Fact]
    public async Task WeightsReplacedInTheStoreAfterTheFetchAreRefusedOnLoad()
    {
        await using var host = await WorkflowHost.StartAsync();
        string dataset = await host.UploadDatasetAsync("tux", perClass: 3);
        var job = new FineTuneJob("swapped", JobSpecReader.Read(JsonSerializer.Serialize(new { jobId = "swapped", dataset = new { location = dataset } }), localPaths: false));
        byte[] original = RandomNumberGenerator.GetBytes(1000), swapped = RandomNumberGenerator.GetBytes(1000);
        string sha = Convert.ToHexStringLower(SHA256.HashData(original));
        string name = ArtifactNames.Weights(sha + ".safetensors");
        var weights = new WeightsRef(name, sha, "test");
        var files = host.Host.Services.GetRequiredService<WorkerFiles>().For(job);
        await host.Store.WriteAsync(name, new MemoryStream(swapped), WriteMode.Overwrite, default);

        var fromStore = await Assert.ThrowsAsync<InvalidWeightsException>(() => files.LoadAsync(weights, null, default));

        Assert.Contains($"{name} in the artifact store has SHA-256 {Convert.ToHexStringLower(SHA256.HashData(swapped))}, not the {sha}", fromStore.Message);
        // A worker's own copy gone bad is fetched again from the store, and checked again.
        string local = Path.Combine(host.WorkDirectory, name);
        Directory.CreateDirectory(Path.GetDirectoryName(local)!);
        await File.WriteAllBytesAsync(local, swapped);
        await host.Store.WriteAsync(name, new MemoryStream(original), WriteMode.Overwrite, default);
        var loaded = await files.LoadAsync(weights, null, default);
        Assert.Equal(original, await File.ReadAllBytesAsync(loaded.Recipe.WeightsPath));
        // A worker hashes its copy again only when the file changed; a change of the same length is one.
        await File.WriteAllBytesAsync(local, swapped);
        Assert.Equal(original, await File.ReadAllBytesAsync((await files.LoadAsync(weights, null, default)).Recipe.WeightsPath));
    }
}
