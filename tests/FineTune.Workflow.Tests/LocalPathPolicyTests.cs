using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using FineTune.Core.Weights;
using FineTune.Workflow.Jobs;
using FineTune.Workflow.Orchestration;
using FineTune.Workflow.Services;
using Microsoft.DurableTask.Client;
using Microsoft.Extensions.DependencyInjection;
using Xunit.Abstractions;

namespace FineTune.Workflow.Tests;

/// <summary>
/// <c>serve --datasets-root/--weights-root</c>: a spec's local paths must resolve, every link followed, under their root;
/// outside, a path that exists and one that does not get the same answer. The activities check again where they read.
/// </summary>
public sealed class LocalPathPolicyTests(ITestOutputHelper log) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("paths-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Root => Path.Combine(_dir, "root");
    private string Outside => Path.Combine(_dir, "outside");

    private LocalPathPolicy Policy()
    {
        Directory.CreateDirectory(Path.Combine(Root, "data"));
        Directory.CreateDirectory(Path.Combine(Outside, "sub"));
        File.WriteAllText(Path.Combine(Root, "w.pth"), "w");
        File.WriteAllText(Path.Combine(Outside, "secret.pth"), "s");
        return new LocalPathPolicy(Root, Root);
    }

    private static JobSpec Spec(string dataset, string weights = "bundled", JsonObject? sweep = null) =>
        JobSpecReader.Read(new JsonObject
        {
            ["dataset"] = new JsonObject { ["location"] = dataset },
            ["weights"] = new JsonObject { ["source"] = weights },
            ["sweep"] = sweep,
        }.ToJsonString(), localPaths: true);

    public static TheoryData<string, string?> Paths => new()
    {
        { "root/data", null },
        { "root/not-yet", null },
        { "root/./data/../data", null },
        { "root/inside-link", null },
        { "outside/sub", LocalPathPolicy.DatasetField },
        { "outside/nonexistent", LocalPathPolicy.DatasetField },
        { "/etc", LocalPathPolicy.DatasetField },
        { "/nonexistent", LocalPathPolicy.DatasetField },
        { "root/../outside/sub", LocalPathPolicy.DatasetField },
        { "root/escape", LocalPathPolicy.DatasetField },
        { "root/escape/sub", LocalPathPolicy.DatasetField },
        { "root/escape/missing", LocalPathPolicy.DatasetField },
        // Lexically under the root; the kernel applies ".." after the link, which leads outside.
        { "root/escape/../../root/data", LocalPathPolicy.DatasetField },
        { "root/deep-escape/../sub", LocalPathPolicy.DatasetField },
        { "root/loop", null },
    };

    [Theory]
    [MemberData(nameof(Paths))]
    public void ADatasetMustResolveUnderItsRoot(string path, string? refusedField)
    {
        var policy = Policy();
        File.CreateSymbolicLink(Path.Combine(Root, "inside-link"), Path.Combine(Root, "data"));
        File.CreateSymbolicLink(Path.Combine(Root, "escape"), Outside);
        File.CreateSymbolicLink(Path.Combine(Root, "deep-escape"), Path.Combine(Outside, "sub"));
        File.CreateSymbolicLink(Path.Combine(Root, "loop"), Path.Combine(Root, "loop"));
        string location = path.StartsWith('/') ? path : Path.Combine(_dir, path);

        var errors = policy.Check(Spec(location));

        log.WriteLine($"{location}: {string.Join("; ", errors)}");
        Assert.Equal(refusedField is null ? [] : [refusedField], errors.Select(e => e.Field));
    }

    [Fact]
    public void OutsideTheRootsAPathThatExistsAndOneThatDoesNotGetTheSameAnswer()
    {
        var policy = Policy();
        string Answer(string dataset, string weights) => string.Join("; ", policy.Check(Spec(dataset, weights)));

        Assert.Equal(Answer("/nonexistent", "/nonexistent.pth"), Answer("/etc", "/etc/passwd"));
        Assert.DoesNotContain("/etc", Answer("/etc", "/etc/passwd"));
        Assert.Contains(LocalPathPolicy.WeightsField, Answer("/etc", "/etc/passwd"));
    }

    [Fact]
    public void WeightsMustResolveUnderTheirRootAndOnlyLocalSourcesAreChecked()
    {
        var policy = Policy();
        File.CreateSymbolicLink(Path.Combine(Root, "link.pth"), Path.Combine(Outside, "secret.pth"));
        string data = Path.Combine(Root, "data");

        Assert.Empty(policy.Check(Spec(data, Path.Combine(Root, "w.pth"))));
        Assert.Empty(policy.Check(Spec(data, "bundled")));
        Assert.Empty(policy.Check(Spec(data, "blob:weights/w.pth")));
        Assert.Empty(policy.Check(Spec(data, "https://download.pytorch.org/models/resnet18-f37072fd.pth")));
        Assert.Equal([LocalPathPolicy.WeightsField], policy.Check(Spec(data, Path.Combine(Root, "link.pth"))).Select(e => e.Field));
        Assert.Equal([LocalPathPolicy.WeightsField], policy.Check(Spec(data, "/dev/zero")).Select(e => e.Field));
    }

    [Fact]
    public void ASweepCannotTakeAPathOutOfItsRoot()
    {
        var policy = Policy();
        var sweep = new JsonObject
        {
            ["parameters"] = new JsonObject
            {
                ["weights.source"] = new JsonArray(Path.Combine(Root, "w.pth"), "/etc/passwd"),
                ["dataset.location"] = new JsonArray(Path.Combine(Root, "data"), "blob:d/"),
            }
        };

        var errors = policy.Check(Spec(Path.Combine(Root, "data"), Path.Combine(Root, "w.pth"), sweep));

        Assert.Equal(["sweep.parameters." + LocalPathPolicy.WeightsField], errors.Select(e => e.Field));
    }

    [Fact]
    public void WithoutRootsTheOwnerMayNameAnyPath()
    {
        Assert.Empty(LocalPathPolicy.Unconfined.Check(Spec("/etc", "/etc/passwd")));
        Assert.Empty(new LocalPathPolicy(null, " ").Check(Spec("/nonexistent", "/dev/zero")));
    }

    [Fact]
    public async Task ADatasetThatBecameALinkOutOfItsRootAfterSubmitFailsTheRunAsBadInput()
    {
        Directory.CreateDirectory(Root);
        HostileFiles.ImageFolder(Outside, 3, "a", "b");
        await using var host = await WorkflowHost.StartAsync(services: s => s.AddSingleton(new LocalPathPolicy(Root, null)));
        string location = Path.Combine(Root, "photos");
        File.CreateSymbolicLink(location, Outside);
        var spec = JobSpecReader.Read(JsonSerializer.Serialize(new { jobId = "escaped", dataset = new { location }, training = new { epochs = 1 } }, WireJson.Options), localPaths: true);

        var scheduler = new DurableClientScheduler(host.Host.Client);
        Assert.True((await scheduler.StartAsync(spec, host.Host.Services.GetRequiredService<RunControl>(), default)).Started);
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var final = await host.Host.Client.WaitForInstanceCompletionAsync("escaped", getInputsAndOutputs: true, timeout.Token);

        Assert.Equal(OrchestrationRuntimeStatus.Failed, final.RuntimeStatus);
        Assert.Contains(LocalPathPolicy.DatasetField, final.FailureDetails!.ErrorMessage);
        Assert.DoesNotContain(Outside, final.FailureDetails.ErrorMessage);
        Assert.False(await host.Store.ExistsAsync(new Storage.RunLayout("escaped").DatasetReport, default));
    }

    [Fact]
    public async Task ACancelStopsALongWeightsCopyAndRemovesItsTemporaryFile()
    {
        // 8 GiB that take no disk (a sparse file): copied at disk speed, it would take a while.
        string weights = Path.Combine(_dir, "huge.pth");
        using (var file = File.Create(weights)) file.SetLength(8L << 30);
        await using var host = await WorkflowHost.StartAsync(services: s =>
        {
            s.Configure<WorkflowOptions>(o => o.CancelPollInterval = TimeSpan.FromMilliseconds(100));
            s.Configure<WeightsFetchOptions>(o => o.MaxBytes = 16L << 30);
        });
        string cache = Path.Combine(host.WorkDirectory, "weights-cache");
        var spec = JobSpecReader.Read(JsonSerializer.Serialize(new
        {
            jobId = "copying",
            model = "resnet18",
            weights = new { source = weights },
            dataset = new { location = await host.UploadDatasetAsync("tux", 3) },
        }, WireJson.Options), localPaths: true);
        var scheduler = new DurableClientScheduler(host.Host.Client);
        var runs = host.Host.Services.GetRequiredService<RunControl>();
        Assert.True((await scheduler.StartAsync(spec, runs, default)).Started);

        string[] Incoming() => Directory.Exists(cache) ? Directory.GetFiles(cache, ".incoming-*") : [];
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        while (!Incoming().Any(f => new FileInfo(f).Length > 0)) await Task.Delay(20, timeout.Token);
        long copiedAtCancel = Incoming().Sum(f => new FileInfo(f).Length);
        var clock = Stopwatch.StartNew();
        Assert.Null(await runs.CancelAsync(scheduler, "copying", default));
        while (Incoming().Length > 0) await Task.Delay(20, timeout.Token);

        log.WriteLine($"the copy stopped and its temporary file was removed {clock.ElapsedMilliseconds} ms after the cancel ({copiedAtCancel >> 20} MB copied by then)");
        Assert.Empty(Directory.GetFiles(cache));
    }
}
