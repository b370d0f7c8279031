using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using FineTune.Storage;
using FineTune.Workflow.Orchestration;
using Microsoft.DurableTask.Client;
using Xunit.Abstractions;

namespace FineTune.Functions.Tests;

/// <summary>One workflow host on Azurite for the whole corpus: the bundled weights are converted once.</summary>
public sealed class HostileHost : IAsyncLifetime
{
    private Api.ModelPool? _models;

    public WorkflowHost Host { get; private set; } = null!;

    /// <summary>The HTTP functions, routed as the Functions host routes them.</summary>
    public HttpClient Client { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Host = await WorkflowHost.StartAsync();
        (Client, _models) = FunctionsClient.For(Host);
    }

    public async Task DisposeAsync()
    {
        Client.Dispose();
        _models?.Dispose();
        await Host.DisposeAsync();
    }
}

/// <summary>
/// Hostile inputs through the HTTP functions with the real workflow on Azurite. A bad request is a 4xx naming the
/// field; a bad dataset or weights file found during the run ends it Failed with <c>errorKind: badInput</c> and a
/// one-line reason naming the file as the user named it (blob names, never this worker's folders). Peak memory is
/// the test process's own (host and workflow in it), measured as its rise during each case.
/// </summary>
public sealed class HostileRequestTests(HostileHost fixture, ITestOutputHelper log) : IClassFixture<HostileHost>
{
    /// <summary>
    /// How far the test process's RSS may rise above where it stood when the case started (the process has run other
    /// tests before, so its absolute size says little): a run that fails on its input adds 0–50 MB, the first case of
    /// a fresh process up to ~370 MB (TorchSharp's native libraries load). Unchecked, the overlapping safetensors alone
    /// add 512 MB and the 1×40000 PNG 7.8 GB.
    /// </summary>
    private const long GrowthBoundBytes = 480L * 1024 * 1024;

    private WorkflowHost Host => fixture.Host;

    public static TheoryData<string, string, int, string> Requests => new()
    {
        { "malformed JSON", """{ "dataset": """, 400, "dataset" },
        { "deeply nested JSON", new string('[', 10_000), 400, "$" },
        { "unknown field", """{ "dataset": { "location": "blob:d/" }, "trainingg": {} }""", 400, "trainingg" },
        { "unknown optimizer", """{ "dataset": { "location": "blob:d/" }, "training": { "optimizer": "adamw2" } }""", 400, "training.optimizer" },
        { "overlong job id", $$"""{ "jobId": "{{new string('a', 100)}}", "dataset": { "location": "blob:d/" } }""", 400, "jobId" },
        { "dataset on the host's disk", """{ "dataset": { "location": "/etc" } }""", 400, "dataset.location" },
        { "weights on the host's disk", """{ "dataset": { "location": "blob:d/" }, "weights": { "source": "/etc/passwd" } }""", 400, "weights.source" },
        { "weights over plain http", """{ "dataset": { "location": "blob:d/" }, "weights": { "source": "http://download.pytorch.org/x-12345678.pth" } }""", 400, "weights.source" },
        { "batch of 4096 with backbone training", """{ "dataset": { "location": "blob:d/" }, "freeze": "full", "training": { "batchSize": 4096 } }""", 400, "training.batchSize" },
        { "body of 2 MiB", $$"""{ "dataset": { "location": "blob:d/", "classes": ["{{new string('x', 2 * 1024 * 1024)}}", "y"] } }""", 413, "" },
    };

    [Theory]
    [MemberData(nameof(Requests))]
    public async Task BadRequestIsRefusedNamingTheFieldAndStartsNothing(string name, string body, int status, string field)
    {
        var (code, answer) = await SendAsync(HttpMethod.Post, "api/finetune", body);

        log.WriteLine($"{name}: {code} {answer}");
        Assert.Equal(status, code);
        Assert.Equal(ErrorKinds.BadInput, answer.GetProperty("errorKind").GetString());
        if (field.Length > 0)
            Assert.True(answer.GetProperty("errors").TryGetProperty(field, out _), answer.ToString());
        await foreach (var _ in Host.Host.Client.GetAllInstancesAsync(new OrchestrationQuery { PageSize = 1 }))
            Assert.Fail("a run started");
    }

    [Fact]
    public async Task OverlongIdInTheUrlIs400()
    {
        string id = new('a', 100);
        Assert.Equal(400, (await SendAsync(HttpMethod.Get, "api/finetune/" + id)).Status);
    }

    public static TheoryData<string> Runs => [.. RunCases.Keys];

    /// <summary>Each run: what to upload (returns the job's JSON) and the words the reason must hold.</summary>
    private static readonly Dictionary<string, (Func<HostileRequestTests, string, Task<JsonObject>> Arrange, string Reason)> RunCases = new()
    {
        ["CSV row leaving its prefix"] = (async (t, p) => await t.CsvAsync(p, "../weights/secret.png,a"), "labels.csv:2: '../weights/secret.png' leaves the manifest's folder"),
        ["CSV row with a host path"] = (async (t, p) => await t.CsvAsync(p, "/etc/passwd,a"), "labels.csv:2: '/etc/passwd' is not a path relative to the manifest's folder"),
        ["CSV row naming a missing blob"] = (async (t, p) => Strict(await t.CsvAsync(p, "a/none.png,a")), $"a/none.png: does not exist"),
        ["one class"] = (async (t, p) => Job(await t.PhotosAsync(p, "a")), "only one class (a)"),
        ["corrupt file"] = (async (t, p) => Strict(Job(await t.PhotosAsync(p, "a", "b", ("a/broken.png", "not a png"u8.ToArray())))), "a/broken.png: not an image"),
        ["1×40000 PNG"] = (async (t, p) => Strict(Job(await t.PhotosAsync(p, "a", "b", ("a/tall.png", HostileFiles.Png(1, 40_000))))), "a/tall.png: 1×40000 is over the 100:1 aspect-ratio limit"),
        ["zip slip"] = (async (t, p) => Job(await t.UploadAsync(p + "photos.zip", HostileFiles.ZipWith("../evil.png"))), "photos.zip: entry '../evil.png' points outside the archive"),
        ["zip bomb"] = (async (t, p) => Job(await t.UploadAsync(p + "photos.zip", HostileFiles.ZipBomb())), "photos.zip: expands to more than"),
        ["zip with a file and a folder of one name"] = (async (t, p) => Job(await t.UploadAsync(p + "photos.zip", HostileFiles.ZipOf("a/1.png", "b/1.png", "a/x.png", "a/x.png/y.png"))),
            "photos.zip: entry 'a/x.png/y.png' clashes with entry 'a/x.png'"),
        ["zip with a 300-character name"] = (async (t, p) => Job(await t.UploadAsync(p + "photos.zip", HostileFiles.ZipOf("a/1.png", "b/1.png", "a/" + new string('n', 296) + ".png"))),
            "has a name part of 300 bytes"),
        ["zip holding one entry twice"] = (async (t, p) => Job(await t.UploadAsync(p + "photos.zip", HostileFiles.ZipOf("a/1.png", "b/1.png", "a/1.png"))),
            "photos.zip: entry 'a/1.png' is in the archive twice"),
        ["zip with a name that is not UTF-8"] = (async (t, p) => Job(await t.UploadAsync(p + "photos.zip", HostileFiles.ZipWithUndecodableName())), "has a name that is not UTF-8 text"),
        ["overlapping safetensors"] = (async (t, p) => await t.WeightsAsync(p, "w.safetensors", HostileFiles.OverlappingSafetensors()), "overlaps tensor"),
        ["pickle calling os.system"] = (async (t, p) => await t.WeightsAsync(p, "w.pth", HostileFiles.TorchArchive(HostileFiles.PickleCallingSystem())), "data.pkl calls a function other than torch's"),
        ["weights from a host not allowed"] = (async (t, p) => Job(await t.PhotosAsync(p, "a", "b"), model: "resnet18", weights: "https://evil.example/resnet18-12345678.pth"),
            "host 'evil.example' is not in the allowed hosts"),
    };

    [Theory]
    [MemberData(nameof(Runs))]
    public async Task BadInputFoundDuringTheRunFailsItAsBadInputNamingTheBlob(string name)
    {
        string id = "hostile-" + Guid.NewGuid().ToString("N")[..8];
        string prefix = $"datasets/{id}/";
        var (arrange, reason) = RunCases[name];
        var job = await arrange(this, prefix);
        job["jobId"] = id;
        long before = ResetPeakMemory();

        Assert.Equal(202, (await SendAsync(HttpMethod.Post, "api/finetune", job.ToJsonString())).Status);
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        await Host.Host.Client.WaitForInstanceCompletionAsync(id, timeout.Token);
        var (code, status) = await SendAsync(HttpMethod.Get, "api/finetune/" + id);
        Assert.Equal(200, code);

        long growth = Memory("VmHWM") - before;
        string error = status.GetProperty("error").GetString() ?? "";
        log.WriteLine($"{name}: {status.GetProperty("status")} {status.GetProperty("errorKind")}, peak {growth >> 20} MB over {before >> 20} MB: {error}");
        Assert.Equal("Failed", status.GetProperty("status").GetString());
        Assert.Equal(ErrorKinds.BadInput, status.GetProperty("errorKind").GetString());
        Assert.Contains(reason, error);
        Assert.DoesNotContain('\n', error);
        Assert.DoesNotContain(Host.WorkDirectory, error);
        Assert.DoesNotContain("/tmp/", error);
        Assert.True(growth < GrowthBoundBytes, $"{name}: peak {growth >> 20} MB over {before >> 20} MB");
        Assert.False(Directory.Exists(Path.Combine(Host.WorkDirectory, "runs", id)), "the failed run's scratch stays");
        // The app's container holds only the shared weights and runs' own folders, nothing of this one published;
        // the uploads stay in theirs.
        await foreach (var blob in Host.Store.ListAsync("", default))
            Assert.True(blob.Name.StartsWith("weights/", StringComparison.Ordinal)
                || blob.Name.StartsWith("runs/hostile-", StringComparison.Ordinal) && !blob.Name.StartsWith($"runs/{id}/published/", StringComparison.Ordinal),
                blob.Name);
    }

    [Fact]
    public async Task CsvDatasetWithTheNamesUsersGiveTheirPhotosTrains()
    {
        const string id = "hostile-spaced-names";
        const string prefix = "datasets/spaced/";
        var photos = TuxPaintStamps.Images("animals", 4).Concat(TuxPaintStamps.Images("plants", 4)).ToList();
        var rows = new List<string> { "path,label" };
        for (int i = 0; i < photos.Count; i++)
        {
            string label = i < 4 ? "chat noir" : "plante verte";
            string blob = $"{label}/IMG_000{i % 4} ({i}).png";
            await UploadAsync(prefix + blob, await File.ReadAllBytesAsync(photos[i]));
            rows.Add($"{blob},{label}");
        }
        await UploadAsync(prefix + "labels.csv", Encoding.UTF8.GetBytes(string.Join('\n', rows)));

        var job = new JsonObject
        {
            ["jobId"] = id,
            ["dataset"] = new JsonObject { ["location"] = "blob:" + prefix + "labels.csv", ["maxBadFraction"] = 0, ["resize"] = "pad" },
            ["training"] = new JsonObject { ["epochs"] = 1, ["batchSize"] = 4 }
        };
        Assert.Equal(202, (await SendAsync(HttpMethod.Post, "api/finetune", job.ToJsonString())).Status);
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        var final = await Host.Host.Client.WaitForInstanceCompletionAsync(id, getInputsAndOutputs: true, timeout.Token);

        Assert.True(final.RuntimeStatus == OrchestrationRuntimeStatus.Completed, final.FailureDetails?.ErrorMessage);
        var report = JsonDocument.Parse(await ReadAsync(new RunLayout(id).DatasetReport)).RootElement;
        Assert.Equal(["chat noir", "plante verte"], report.GetProperty("classes").EnumerateArray().Select(c => c.GetString()));
        Assert.Equal(0, report.GetProperty("skipped").GetArrayLength());
        // The report names the photos as they were uploaded, not by the worker's copies.
        var predicted = Encoding.UTF8.GetString(await ReadAsync(new RunLayout(id).Predictions)).Split('\n', StringSplitOptions.RemoveEmptyEntries).Skip(1).ToList();
        Assert.NotEmpty(predicted);
        Assert.All(predicted, row => Assert.StartsWith("blob:" + prefix, row));
    }

    private static JsonObject Job(string location, string? model = null, string? weights = null)
    {
        var job = new JsonObject { ["dataset"] = new JsonObject { ["location"] = location }, ["training"] = new JsonObject { ["epochs"] = 1, ["batchSize"] = 4 } };
        if (model is not null) job["model"] = model;
        if (weights is not null) job["weights"] = new JsonObject { ["source"] = weights };
        return job;
    }

    /// <summary>No bad file tolerated, so the bad one is named.</summary>
    private static JsonObject Strict(JsonObject job)
    {
        job["dataset"]!["maxBadFraction"] = 0;
        return job;
    }

    private async Task<string> UploadAsync(string name, byte[] content)
    {
        await Host.Uploads.WriteAsync(name, new MemoryStream(content), WriteMode.Overwrite, default);
        return "blob:" + name;
    }

    /// <summary>Three photos per class under the prefix, plus the extra files; the prefix as a dataset location.</summary>
    private async Task<string> PhotosAsync(string prefix, params object[] classesAndExtras)
    {
        var photos = TuxPaintStamps.Images("animals", 6);
        int next = 0;
        foreach (var item in classesAndExtras)
        {
            if (item is string label)
                for (int i = 0; i < 3; i++) await UploadAsync($"{prefix}{label}/img{i}.png", await File.ReadAllBytesAsync(photos[next++ % photos.Count]));
            else if (item is (string name, byte[] content))
                await UploadAsync(prefix + name, content);
        }
        return "blob:" + prefix;
    }

    private async Task<JsonObject> CsvAsync(string prefix, string row)
    {
        await PhotosAsync(prefix, "a", "b");
        return Job(await UploadAsync(prefix + "labels.csv", Encoding.UTF8.GetBytes($"path,label\n{row}\na/img1.png,a\na/img2.png,a\nb/img1.png,b\nb/img2.png,b\n")));
    }

    private async Task<JsonObject> WeightsAsync(string prefix, string fileName, byte[] weights) =>
        Job(await PhotosAsync(prefix, "a", "b"), model: "resnet18", weights: await UploadAsync($"uploads/{prefix}{fileName}", weights));

    private async Task<byte[]> ReadAsync(string name)
    {
        await using var stream = await Host.Store.OpenReadAsync(name, default);
        using var copy = new MemoryStream();
        await stream.CopyToAsync(copy);
        return copy.ToArray();
    }

    /// <summary>Linux's peak RSS (VmHWM) starts again from the current RSS when 5 is written to clear_refs; returns that RSS.</summary>
    private static long ResetPeakMemory()
    {
        File.WriteAllText("/proc/self/clear_refs", "5");
        return Memory("VmRSS");
    }

    /// <summary>A size from /proc/self/status (VmRSS, VmHWM), in bytes.</summary>
    private static long Memory(string field) =>
        long.Parse(File.ReadLines("/proc/self/status").First(l => l.StartsWith(field + ":", StringComparison.Ordinal)).Split(' ', StringSplitOptions.RemoveEmptyEntries)[1],
            System.Globalization.CultureInfo.InvariantCulture) * 1024;

    private async Task<(int Status, JsonElement Answer)> SendAsync(HttpMethod method, string path, string? body = null)
    {
        using var request = new HttpRequestMessage(method, path);
        if (body is not null) request.Content = new StringContent(body, Encoding.UTF8, "application/json");
        using var response = await fixture.Client.SendAsync(request);
        string text = await response.Content.ReadAsStringAsync();
        return ((int)response.StatusCode, text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone());
    }
}
